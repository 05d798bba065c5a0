"""The ingester: subscribes to a fleet's telemetry and stores every valid batch once.

By default an ingester takes a plain subscription with a persistent broker session (fixed
client id, clean start off), so batches published while it is down, or while a restarted
broker waits for it to reconnect, are queued by the broker and arrive later. Several
ingesters share the load through an MQTT 5 shared subscription when given a group
(`$share/<group>/edgecascade/<fleet>/+/telemetry`); on an MQTT 3.1.1 connection it falls back
to a plain subscription (then run only one). Malformed or foreign payloads are logged, counted and never stored."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import replace

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edgecascade.cloud.ingest.store import TelemetryStore
from edgecascade.shared.errors import ProtocolError, StorageError
from edgecascade.shared.mqtt import MqttConnection, MqttSettings, Topics
from edgecascade.shared.telemetry import TelemetryBatch, decode_batch

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


class Ingester:
    """Call `start()` to subscribe (the connection may start before or after), `stop()` to unsubscribe
    nothing but close the store. Counters: batches, stored, duplicates, malformed, store_failures."""

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
    ) -> None:
        self.connection = connection
        self.store_retry_max_s = store_retry_max_s
        self._stopping = threading.Event()
        self.store = store
        self.clock = clock
        plain = Topics(fleet).all_telemetry()
        # No group (the default) means a plain subscription. Mosquitto 2.0 does not queue
        # messages of a shared subscription for a member that is offline, so a lone ingester
        # that restarts, or reconnects to a restarted broker after its devices do, would miss
        # what was published meanwhile; a plain subscription with a persistent session is queued.
        self.topic = f"$share/{group}/{plain}" if group and connection.settings.protocol == 5 else plain
        self._lock = threading.Lock()
        self.batches = 0
        self.stored = 0
        self.duplicates = 0
        self.malformed = 0
        self.store_failures = 0

    def start(self) -> None:
        self.connection.subscribe(self.topic, self.handle, qos=1)
        log.info("ingesting telemetry from %s", self.topic)

    def stop(self, timeout_s: float = 2.0) -> None:
        self._stopping.set()
        self.connection.unsubscribe(self.topic)

    def handle(self, msg: mqtt.MQTTMessage) -> None:
        """Validate and store one message. Runs on paho's network thread; never raises."""
        try:
            batch = decode_batch(bytes(msg.payload), Topics.device_of(msg.topic))
        except ProtocolError as exc:
            with self._lock:
                self.malformed += 1
            log.warning("ignored a malformed telemetry message on %s: %s", msg.topic, exc)
            self.connection.ack(msg)  # garbage stays garbage: do not have it redelivered
            return
        new = self._store_with_retries(batch)
        if new is None:
            # Not acknowledged (manual-ack connection): the broker keeps the message and
            # redelivers it after our reconnect; storage dedupes if part of it did land.
            return
        self.connection.ack(msg)
        with self._lock:
            self.batches += 1
            self.stored += new
            self.duplicates += len(batch.records) - new
        if new < len(batch.records):
            log.debug("%s: %d duplicate records ignored", batch.device, len(batch.records) - new)

    def _store_with_retries(self, batch: TelemetryBatch) -> int | None:
        """Store, retrying with backoff while the store is failing (a locked database, a
        restarting PostgreSQL). Blocking here is backpressure: paho reads nothing more until
        this batch is stored. Returns None if the ingester is stopping first."""
        delay = 0.05
        logged = False
        while True:
            try:
                new = self.store.store(batch, self.clock())
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
            return new

    def counters(self) -> dict[str, int]:
        with self._lock:
            return {
                "batches": self.batches,
                "stored": self.stored,
                "duplicates": self.duplicates,
                "malformed": self.malformed,
                "store_failures": self.store_failures,
            }
