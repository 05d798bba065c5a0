"""The telemetry uplink: buffered records -> QoS 1 batches on the device's telemetry topic.

The buffer is the source of truth (paho keeps unacknowledged messages only in memory): a
batch is deleted from it only after the broker's PUBACK. On a disconnect or a PUBACK timeout
every unacknowledged batch is forgotten and taken again from the buffer once connected, so a
broker outage, a network cut or an agent restart resumes where it left off; the ingester's
(device, seq) key turns the resulting at-least-once delivery into exactly-once storage.
Highest-priority records go first (drop reports, metrics) and the drain is capped at
`uplink_max_records_per_s`, so a long backlog does not starve the rest of the device."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from edgecascade.edge.config.telemetry import TelemetrySection
from edgecascade.edge.telemetry.buffer import TelemetryBuffer
from edgecascade.shared.errors import StorageError, TransportError
from edgecascade.shared.telemetry import PRIORITY, RecordKind, encode_batch

if TYPE_CHECKING:
    from paho.mqtt.client import MQTTMessageInfo

    from edgecascade.shared.mqtt import MqttConnection

log = logging.getLogger(__name__)

_IDLE_POLL_S = 0.05
_RETRY_PAUSE_S = 0.5


@dataclass
class _InFlight:
    info: MQTTMessageInfo
    seqs: list[int]
    deadline: float


class TelemetryUplink:
    """A Service: `start()` runs the sender thread, `stop(timeout_s)` waits for in-flight PUBACKs."""

    name = "telemetry-uplink"

    def __init__(
        self,
        buffer: TelemetryBuffer,
        connection: MqttConnection,
        *,
        topic: str,
        device: str,
        section: TelemetrySection,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.buffer = buffer
        self.connection = connection
        self.topic = topic
        self.device = device
        self.section = section
        self.clock = clock
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._inflight: deque[_InFlight] = deque()
        self._cursor: tuple[int, int] | None = None
        self._next_send = 0.0
        self.sent_records = 0
        self.sent_batches = 0
        self.resent_batches = 0  # batches given up after a disconnect or timeout, taken again later

    def start(self) -> None:
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="telemetry-uplink", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float) -> None:
        deadline = self.clock() + timeout_s
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(max(0.0, deadline - self.clock()))
            self._thread = None

    # -- the sender loop --------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            stopping = self._stopping.is_set()
            if stopping and not self._inflight:
                return
            if not self.connection.connected.is_set():
                self._abandon("disconnected")
                if stopping:
                    return
                self.connection.connected.wait(_RETRY_PAUSE_S)
                continue
            sent = False if stopping else self._fill_window()
            if self._inflight:
                self._settle_oldest()
            elif not sent:
                self._cursor = None  # nothing in flight: next time start again from the top
                self._stopping.wait(_IDLE_POLL_S)

    def _fill_window(self) -> bool:
        sent = False
        while len(self._inflight) < self.section.uplink_window:
            now = self.clock()
            if now < self._next_send:
                if self._inflight or self._stopping.wait(self._next_send - now):
                    return sent  # settle PUBACKs meanwhile (or stop)
                continue
            records = self.buffer.peek(self.section.uplink_batch, after=self._cursor)
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
                _InFlight(info, [r.seq for r in records], now + self.section.puback_timeout_s)
            )
            self._next_send = max(self._next_send, now) + len(records) / self.section.uplink_max_records_per_s
            sent = True
        return sent

    def _settle_oldest(self) -> None:
        head = self._inflight[0]
        while not head.info.is_published():
            if not self.connection.connected.is_set():
                self._abandon("disconnected")
                return
            if self.clock() >= head.deadline:
                log.warning(
                    "no PUBACK for a telemetry batch in %.1f s; resending", self.section.puback_timeout_s
                )
                self._abandon("puback timeout")
                return
            try:
                head.info.wait_for_publish(0.05)
            except (RuntimeError, ValueError):
                self._abandon("publish failed")
                return
        self._inflight.popleft()
        try:
            self.buffer.delete(head.seqs)
        except StorageError:
            # They will be sent again; the ingester's dedup keeps storage exact.
            log.exception("telemetry: acknowledged batch could not be deleted; it will be resent")
        self.sent_batches += 1
        self.sent_records += len(head.seqs)

    def _abandon(self, why: str) -> None:
        if self._inflight:
            log.info("telemetry: %d unacknowledged batches will be resent (%s)", len(self._inflight), why)
            self.resent_batches += len(self._inflight)
            self._inflight.clear()
        self._cursor = None
