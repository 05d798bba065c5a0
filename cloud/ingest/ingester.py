"""The ingester: subscribes to a fleet's telemetry and stores every valid batch once.

By default an ingester takes a plain subscription with a persistent broker session (fixed
client id, clean start off), so batches published while it is down, or while a restarted
broker waits for it to reconnect, are queued by the broker and arrive later. Several
ingesters share the load through an MQTT 5 shared subscription when given a group
(`$share/<group>/edgecascade/<fleet>/+/telemetry`); on an MQTT 3.1.1 connection it falls back
to a plain subscription (then run only one).

After a batch is committed the ingester publishes, QoS 1 on the device's own
`telemetry-ack` topic, the sequence numbers it now holds (new, duplicate or dead-lettered);
the device deletes a record only then. Only after that is the broker's copy acknowledged, so
a crash anywhere in between ends in a redelivery that storage dedupes, never in a loss.

A payload that is not a batch at all (too big, not UTF-8 JSON, nested too deeply, unknown
version, a foreign device) is refused: one log line, the `refused` counter, and acknowledged
to the broker so it is not redelivered. A record of a valid batch that cannot be stored goes
to the dead-letter table (`dead_lettered` counter and a log line) and is acknowledged like
the rest: one device's bad data never holds up a batch, a device, or the fleet."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import replace

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edgecascade.cloud.ingest.store import StoreResult, TelemetryStore
from edgecascade.shared.errors import ProtocolError, StorageError, TransportError
from edgecascade.shared.mqtt import MqttConnection, MqttSettings, Topics
from edgecascade.shared.telemetry import MAX_PAYLOAD_BYTES, TelemetryBatch, decode_batch
from edgecascade.shared.telemetry_ack import encode_ack

log = logging.getLogger(__name__)


class PersistentMqttConnection(MqttConnection):
    """An MqttConnection whose broker session outlives a disconnect or a restart of this process
    (MQTT 5: clean start off and a session expiry; 3.1.1: clean session off)."""

    def __init__(self, settings: MqttSettings, session_expiry_s: int = 7 * 24 * 3600) -> None:
        # Manual acks: a batch is acknowledged only once it is stored.
        super().__init__(replace(settings, clean_start=False, manual_ack=True))
        self.session_expiry_s = session_expiry_s

    def start(self, wait_s: float | None = None) -> bool:
        if self.settings.protocol != 5:
            return super().start(wait_s)
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.session_expiry_s
        self.client.connect_async(
            self.settings.host,
            self.settings.port,
            keepalive=self.settings.keepalive_s,
            clean_start=False,
            properties=props,
        )
        self.client.loop_start()
        return self.connected.wait(wait_s) if wait_s else self.connected.is_set()


class _LogThrottle:
    """At most `limit` log lines per `window_s`, so a flood of garbage cannot flood the log;
    the next line let through says how many were held back (the counters count them all)."""

    def __init__(self, limit: int = 100, window_s: float = 60.0) -> None:
        self.limit = limit
        self.window_s = window_s
        self._start = time.monotonic()
        self._lines = 0
        self.held_back = 0

    def allow(self) -> bool:
        now = time.monotonic()
        if now - self._start >= self.window_s:
            self._start, self._lines = now, 0
        if self._lines < self.limit:
            self._lines += 1
            return True
        self.held_back += 1
        return False

    def take_held_back(self) -> int:
        n, self.held_back = self.held_back, 0
        return n


class Ingester:
    """Call `start()` to subscribe (the connection may start before or after), `stop()` to
    unsubscribe. Counters: batches, stored, duplicates, dead_lettered, refused, store_failures,
    acks_sent."""

    name = "telemetry-ingester"

    def __init__(
        self,
        connection: MqttConnection,
        store: TelemetryStore,
        *,
        fleet: str,
        group: str = "",
        clock: Callable[[], float] = time.time,
        store_retry_max_s: float = 5.0,
        max_payload_bytes: int = MAX_PAYLOAD_BYTES,
    ) -> None:
        self.connection = connection
        self.store_retry_max_s = store_retry_max_s
        self.max_payload_bytes = max_payload_bytes
        self._stopping = threading.Event()
        self.store = store
        self.clock = clock
        self.topics = Topics(fleet)
        plain = self.topics.all_telemetry()
        # No group (the default) means a plain subscription. Mosquitto 2.0 does not queue
        # messages of a shared subscription for a member that is offline, so a lone ingester
        # that restarts, or reconnects to a restarted broker after its devices do, would miss
        # what was published meanwhile; a plain subscription with a persistent session is queued.
        self.topic = f"$share/{group}/{plain}" if group and connection.settings.protocol == 5 else plain
        self._lock = threading.Lock()
        self.batches = 0
        self.stored = 0
        self.duplicates = 0
        self.dead_lettered = 0
        self.refused = 0
        self.store_failures = 0
        self.acks_sent = 0
        self._refused_log = _LogThrottle()
        self._dead_log = _LogThrottle()

    def start(self) -> None:
        self.connection.subscribe(self.topic, self.handle, qos=1)
        log.info("ingesting telemetry from %s", self.topic)

    def stop(self, timeout_s: float = 2.0) -> None:
        self._stopping.set()
        self.connection.unsubscribe(self.topic)

    def handle(self, msg: mqtt.MQTTMessage) -> None:
        """Validate, store and acknowledge one message. Runs on paho's network thread; never raises."""
        payload = bytes(msg.payload)
        try:
            batch = decode_batch(payload, self._device_of(msg.topic), max_bytes=self.max_payload_bytes)
        except ProtocolError as exc:
            self._refuse(msg, payload, exc)
            return
        result = self._store_with_retries(batch)
        if result is None:
            # Not acknowledged (manual-ack connection): the broker keeps the message and
            # redelivers it after our reconnect; storage dedupes if part of it did land.
            return
        self._acknowledge(batch)
        self.connection.ack(msg)
        self._count_stored(batch, result)

    @staticmethod
    def _device_of(topic: str) -> str:
        """The device whose telemetry topic this is. The subscription's `+` also matches topic
        words (`models`, `tables`, `artifacts`), where no device speaks: a batch there could
        claim any device and take its sequence numbers, so it is refused (ProtocolError)."""
        device = Topics.device_of(topic)
        if device is None:
            raise ProtocolError("not a device's telemetry topic", field="topic")
        return device

    def _refuse(self, msg: mqtt.MQTTMessage, payload: bytes, exc: ProtocolError) -> None:
        """Count and (throttled) log a payload that is not a batch, and ack it to the broker."""
        with self._lock:
            self.refused += 1
            refused = self.refused
            logged = self._refused_log.allow()
            held = self._refused_log.take_held_back() if logged else 0
        if logged:
            log.warning(
                "refused a telemetry message on %s (%d bytes; %d refused so far%s): %s",
                msg.topic[:200],
                len(payload),
                refused,
                f", {held} not logged" if held else "",
                exc,
            )
        self.connection.ack(msg)  # garbage stays garbage: do not have it redelivered

    def _count_stored(self, batch: TelemetryBatch, result: StoreResult) -> None:
        """Add a stored batch to the counters; a (throttled) log line for dead-lettered records."""
        with self._lock:
            self.batches += 1
            self.stored += result.stored
            self.duplicates += result.duplicates
            self.dead_lettered += result.dead_lettered
            dead_total = self.dead_lettered
            logged = bool(result.dead_lettered) and self._dead_log.allow()
            held = self._dead_log.take_held_back() if logged else 0
        if logged:
            log.warning(
                "%s: %d of %d records could not be stored and went to the dead-letter table "
                "(%d so far%s); first reason: %s",
                batch.device,
                result.dead_lettered,
                len(batch.records) + len(batch.rejected),
                dead_total,
                f", {held} batches not logged" if held else "",
                result.reasons[0] if result.reasons else "?",
            )
        if result.duplicates:
            log.debug("%s: %d duplicate records ignored", batch.device, result.duplicates)

    def _acknowledge(self, batch: TelemetryBatch) -> None:
        """Tell the device what is stored. A lost acknowledgement only costs a resend."""
        seqs = batch.settled_seqs()
        if not seqs:
            return
        try:
            self.connection.publish(self.topics.telemetry_ack(batch.device), encode_ack(batch.device, seqs))
        except TransportError as exc:
            log.warning("could not acknowledge %s's telemetry (%s); it will be resent", batch.device, exc)
            return
        with self._lock:
            self.acks_sent += 1

    def _store_with_retries(self, batch: TelemetryBatch) -> StoreResult | None:
        """Store, retrying with backoff while the store is failing (a locked database, a
        restarting PostgreSQL). Blocking here is backpressure: paho reads nothing more until
        this batch is stored. Returns None if the ingester is stopping first."""
        delay = 0.05
        logged = False
        while True:
            try:
                result = self.store.store(batch, self.clock())
            except StorageError as exc:
                with self._lock:
                    self.store_failures += 1
                if not logged:
                    log.error(
                        "cannot store telemetry from %s (%s); retrying, nothing is acknowledged meanwhile",
                        batch.device,
                        exc,
                    )
                    logged = True
                if self._stopping.wait(delay):
                    return None
                delay = min(delay * 2, self.store_retry_max_s)
                continue
            if logged:
                log.info("telemetry store works again")
            return result

    def counters(self) -> dict[str, int]:
        with self._lock:
            return {
                "batches": self.batches,
                "stored": self.stored,
                "duplicates": self.duplicates,
                "dead_lettered": self.dead_lettered,
                "refused": self.refused,
                "store_failures": self.store_failures,
                "acks_sent": self.acks_sent,
            }
