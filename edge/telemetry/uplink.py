"""The MQTT telemetry sink: buffered records -> QoS 1 batches on the device's telemetry topic,
deleted from the buffer only when the ingester acknowledges that it stored them.

The broker is not a store: its PUBACK means only that it holds the message in memory (a
`kill -9` of Mosquitto loses whatever it had not yet saved). So a batch stays in the buffer
until the ingester, after committing it, names its sequence numbers on the device's
`telemetry-ack` topic. A batch with no PUBACK in `puback_timeout_s`, or no acknowledgement in
the current ack wait (`ack_timeout_s`, doubling after each miss up to `ack_timeout_max_s`
while the ingester is away), is taken again from the buffer and resent, as is everything in
flight after a disconnect; the ingester's (device, seq) key turns the resulting
at-least-once delivery into exactly-once storage, and acknowledges duplicates too.

At most `uplink_window` batches wait for acknowledgement at once, which bounds what a device
puts into the broker while no ingester is listening. Highest-priority records go first
(drop reports, metrics) and the drain is capped at `uplink_max_records_per_s`, so a long
backlog does not starve the rest of the device."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from edgecascade.edge.config.telemetry import TelemetrySection
from edgecascade.edge.telemetry.buffer import BufferedRecord, TelemetryBuffer
from edgecascade.edge.telemetry.sinks import SinkContext
from edgecascade.shared.errors import ProtocolError, StorageError, TransportError
from edgecascade.shared.mqtt import Topics
from edgecascade.shared.telemetry import PRIORITY, RecordKind, encode_batch
from edgecascade.shared.telemetry_ack import decode_ack

if TYPE_CHECKING:
    # paho arrives with the device's MqttConnection; a device with MQTT off never imports it.
    from paho.mqtt.client import MQTTMessage, MQTTMessageInfo

    from edgecascade.shared.mqtt import MqttConnection

log = logging.getLogger(__name__)

_IDLE_POLL_S = 0.05
_RETRY_PAUSE_S = 0.5
# At exit, wait at most this long for acknowledgements still owed: what is not acknowledged
# stays in the buffer and is resent after the restart, so waiting longer only saves resends.
_STOP_ACK_WAIT_S = 1.0


@dataclass
class _InFlight:
    info: MQTTMessageInfo
    pending: set[int]  # sequence numbers the ingester has not yet acknowledged
    puback_deadline: float
    ack_deadline: float


class TelemetryUplink:
    """A Service and TelemetrySink: `start()` subscribes to the acknowledgements and runs the
    sender thread, `stop(timeout_s)` waits up to that long (1 s at most) for acknowledgements
    still owed."""

    name = "telemetry-uplink"

    def __init__(
        self,
        buffer: TelemetryBuffer,
        connection: MqttConnection,
        *,
        topic: str,
        ack_topic: str,
        device: str,
        section: TelemetrySection,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.buffer = buffer
        self.connection = connection
        self.topic = topic
        self.ack_topic = ack_topic
        self.device = device
        self.section = section
        self.clock = clock
        self._stopping = threading.Event()
        self._stop_deadline = 0.0
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._inflight: deque[_InFlight] = deque()
        self._acks: deque[list[tuple[int, int]]] = deque()  # filled on paho's thread
        self._cursor: tuple[int, int] | None = None
        self._next_send = 0.0
        self._ack_wait = section.ack_timeout_s
        self.sent_records = 0
        self.sent_batches = 0
        self.acked_records = 0  # deleted from the buffer on the ingester's acknowledgement
        self.resent_batches = 0  # batches given up (disconnect, no PUBACK, no ack) and taken again
        self.ack_timeouts = 0
        self.bad_acks = 0

    @classmethod
    def from_context(cls, context: SinkContext) -> TelemetryUplink | None:
        if context.connection is None:
            log.info("telemetry: mqtt is switched off; records stay in the buffer")
            return None
        p = context.profile
        topics = Topics(p.fleet)
        return cls(
            context.buffer,
            context.connection,
            topic=topics.telemetry(p.device_id),
            ack_topic=topics.telemetry_ack(p.device_id),
            device=p.device_id,
            section=p.telemetry,
        )

    def start(self) -> None:
        self.connection.subscribe(self.ack_topic, self._on_ack, qos=1)
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="telemetry-uplink", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float) -> None:
        self._stop_deadline = self.clock() + min(timeout_s, _STOP_ACK_WAIT_S)
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s + 1.0)
            self._thread = None
        self.connection.unsubscribe(self.ack_topic)

    def counters(self) -> dict[str, int]:
        return {
            "sent_records": self.sent_records,
            "sent_batches": self.sent_batches,
            "acked_records": self.acked_records,
            "resent_batches": self.resent_batches,
            "ack_timeouts": self.ack_timeouts,
            "bad_acks": self.bad_acks,
        }

    # -- acknowledgements (paho's network thread) -------------------------------------------
    def _on_ack(self, msg: MQTTMessage) -> None:
        try:
            ranges = decode_ack(bytes(msg.payload), self.device)
        except ProtocolError as exc:
            self.bad_acks += 1
            log.warning("telemetry: ignored an acknowledgement on %s: %s", msg.topic, exc)
            return
        self._acks.append(ranges)
        self._wake.set()

    # -- the sender loop --------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            self._apply_acks()
            stopping = self._stopping.is_set()
            if stopping and (not self._inflight or self.clock() >= self._stop_deadline):
                return
            if not self.connection.connected.is_set():
                self._abandon("disconnected")
                if stopping:
                    return
                self.connection.connected.wait(_RETRY_PAUSE_S)
                continue
            self._check_deadlines()
            sent = False if stopping else self._fill_window()
            if not sent:
                if not self._inflight:
                    self._cursor = None  # nothing in flight: next time start again from the top
                self._wake.wait(_IDLE_POLL_S)
                self._wake.clear()

    def _apply_acks(self) -> None:
        ranges: list[tuple[int, int]] = []
        while self._acks:
            ranges.extend(self._acks.popleft())
        if not ranges:
            return
        try:
            self.acked_records += self.buffer.delete_ranges(ranges)
        except StorageError:
            # They stay and are resent; the ingester dedupes and acknowledges them again.
            log.exception("telemetry: acknowledged records could not be deleted; they will be resent")
            return
        settled = False
        for flight in self._inflight:
            before = len(flight.pending)
            flight.pending = {s for s in flight.pending if not any(lo <= s <= hi for lo, hi in ranges)}
            settled |= len(flight.pending) < before
        if settled:
            self._ack_wait = self.section.ack_timeout_s  # the ingester is there
            self._inflight = deque(f for f in self._inflight if f.pending)

    def _check_deadlines(self) -> None:
        now = self.clock()
        for flight in self._inflight:
            if not flight.info.is_published() and now >= flight.puback_deadline:
                log.warning(
                    "no PUBACK for a telemetry batch in %.1f s; resending", self.section.puback_timeout_s
                )
                self._abandon("no PUBACK")
                return
            if now >= flight.ack_deadline:
                self.ack_timeouts += 1
                waited, self._ack_wait = (
                    self._ack_wait,
                    min(self._ack_wait * 2, self.section.ack_timeout_max_s),
                )
                log.warning(
                    "telemetry: the ingester has not confirmed storing %d batches in %.1f s; "
                    "resending them (next wait %.1f s)",
                    len(self._inflight),
                    waited,
                    self._ack_wait,
                )
                self._abandon("no acknowledgement")
                return

    def _fill_window(self) -> bool:
        sent = False
        while len(self._inflight) < self.section.uplink_window:
            now = self.clock()
            if now < self._next_send:
                if self._inflight or self._stopping.wait(self._next_send - now):
                    return sent  # settle acknowledgements meanwhile (or stop)
                continue
            records = self._take()
            if not records:
                return sent
            payload = encode_batch(self.device, [r.row() for r in records])
            try:
                info = self.connection.publish(self.topic, payload, qos=1)
            except TransportError as exc:
                log.warning("telemetry publish refused (%s); retrying", exc)
                return sent
            if info.rc != 0:
                log.info("telemetry publish not accepted (rc=%s); waiting for the connection", info.rc)
                self._abandon("publish failed")
                return sent
            last = records[-1]
            self._cursor = (PRIORITY[RecordKind(last.kind)], last.seq)
            self._inflight.append(
                _InFlight(
                    info,
                    {r.seq for r in records},
                    now + self.section.puback_timeout_s,
                    now + self._ack_wait,
                )
            )
            self._next_send = max(self._next_send, now) + len(records) / self.section.uplink_max_records_per_s
            self.sent_batches += 1
            self.sent_records += len(records)
            sent = True
        return sent

    def _take(self) -> list[BufferedRecord]:
        """The next batch after the cursor, cut at `uplink_max_bytes` of bodies (one record always)."""
        records = self.buffer.peek(self.section.uplink_batch, after=self._cursor)
        size = 0
        for i, record in enumerate(records):
            size += len(record.body)
            if i and size > self.section.uplink_max_bytes:
                return records[:i]
        return records

    def _abandon(self, why: str) -> None:
        if self._inflight:
            log.info("telemetry: %d unacknowledged batches will be resent (%s)", len(self._inflight), why)
            self.resent_batches += len(self._inflight)
            self._inflight.clear()
        self._cursor = None
