"""The late-verdict worker: sends queued hard cases to the cloud when it looks reachable, at a
bounded rate, and delivers each answer as a late verdict exactly once per request id.

Per case: ask the cloud (the request id is the idempotency key, so a re-sent case is
computed and counted once by the cloud); remember the answer in the cloud-answer cache
(idempotent, by content key); then store the verdict and delete the case in one
transaction. Delivery is driven from the stored verdict (an outbox): the telemetry record
and the QoS 1 MQTT event are retried until done and flagged in the store, so a restart or a
broker outage delays them but loses nothing. A crash before the commit re-sends the case;
a crash after it re-does only the side effects not yet flagged. Only a crash between a
PUBACK and its flag can repeat an MQTT event: consumers dedupe by request_id.

Reachability: the worker simply calls the shared cloud client. With its breaker open no call
is made (CircuitOpenError) and the worker waits `retry_interval_s`; once half-open, the next
queued case is the probe."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from edgecascade.edge.answer import Answer, ModelRef
from edgecascade.edge.cascade import CascadeRequest, CloudAnswerSink
from edgecascade.edge.cloud_client import CloudClient
from edgecascade.edge.config.deferred import DeferredSection
from edgecascade.edge.deferred.queue import DeferredQueue, QueuedCase
from edgecascade.edge.deferred.verdicts import Verdict, VerdictStore, telemetry_body
from edgecascade.shared.errors import (
    CircuitOpenError,
    CloudBadResponseError,
    CloudError,
    StorageError,
    TransportError,
)
from edgecascade.shared.telemetry import RecordKind

if TYPE_CHECKING:  # the shared connection is passed in; this module needs no MQTT import
    from edgecascade.shared.mqtt import MqttConnection

log = logging.getLogger(__name__)

_IDLE_S = 0.05
_HOUSEKEEPING_S = 10.0
_DELIVER_BATCH = 64


class VerdictRecorder(Protocol):
    """What the worker needs of edge.telemetry.TelemetryRecorder."""

    def record(self, kind: RecordKind, body: dict[str, Any]) -> None: ...

    def flush(self) -> object: ...


class LateVerdictWorker:
    """A Service (edge.service): `start()` runs the sender thread; `stop(timeout_s)` lets the
    call in flight finish (bounded by the cloud client's deadline)."""

    name = "late-verdicts"

    def __init__(
        self,
        queue: DeferredQueue,
        verdicts: VerdictStore,
        cloud: CloudClient,
        section: DeferredSection,
        *,
        connection: MqttConnection | None = None,
        topic: str = "",
        recorder: VerdictRecorder | None = None,
        cache: CloudAnswerSink | None = None,
        labels: Callable[[], Sequence[str]] | None = None,
        send_raw_input: bool = False,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.queue = queue
        self.verdicts = verdicts
        self.cloud = cloud
        self.section = section
        self.connection = connection
        self.topic = topic
        self.recorder = recorder
        self.cache = cache
        self.labels = labels
        self.send_raw_input = send_raw_input
        self.clock = clock
        self.monotonic = monotonic
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._next_send = 0.0
        self._next_try = 0.0
        self._next_housekeeping = 0.0
        self.sent = 0  # cases the cloud answered (this process)
        self.failures = 0  # failed sends, breaker-open skips excluded
        self.published = 0
        self.duplicates = 0  # answers for a request id that already had a verdict (not delivered again)
        self.storage_errors = 0

    # -- Service ------------------------------------------------------------------------------
    def start(self) -> None:
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="late-verdicts", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None

    # -- the loop -------------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                self._housekeeping()
                self.deliver()
                worked = self.step()
            except StorageError:
                self.storage_errors += 1
                log.exception("deferred store failed; retrying in %.1f s", self.section.retry_interval_s)
                self._stopping.wait(self.section.retry_interval_s)
                continue
            if not worked:
                self._stopping.wait(_IDLE_S)

    def step(self) -> bool:
        """Send the next queued case if the rate limit and backoff allow; True if a call was made."""
        now = self.monotonic()
        if now < self._next_try or now < self._next_send:
            return False
        case = self.queue.next()
        if case is None:
            return False
        self._next_send = max(self._next_send, now) + 1.0 / self.section.rate_per_s
        try:
            answer = self.cloud.infer(
                case.features,
                request_id=case.request_id,
                raw_input=case.raw if self.send_raw_input else None,
            )
        except CircuitOpenError:
            self._next_try = now + self.section.retry_interval_s
            return False
        except CloudError as exc:
            self.failures += 1
            self._next_try = now + self.section.retry_interval_s
            attempts = self.queue.record_failure(case.request_id)
            if isinstance(exc, CloudBadResponseError) and attempts >= self.section.max_attempts:
                self.queue.drop(case.request_id, "rejected")
            else:
                log.info(
                    "deferred case %s not sent (%s); %d queued", case.request_id, exc, self.queue.depth()
                )
            return True
        self.sent += 1
        verdict, cloud_answer = self._verdict(
            case, answer.probabilities, answer.model.name, answer.model.version
        )
        if self.cache is not None:
            self.cache.remember(CascadeRequest(case.features, request_id=case.request_id), cloud_answer)
        if not self.queue.complete(verdict, published=self.connection is None):
            self.duplicates += 1
            log.info("deferred case %s already had a verdict; not delivered again", case.request_id)
        self.deliver()
        return True

    def _verdict(
        self, case: QueuedCase, probabilities: np.ndarray, model: str, version: str
    ) -> tuple[Verdict, Answer]:
        top = int(probabilities.argmax())
        labels = self.labels() if self.labels is not None else ()
        label = labels[top] if top < len(labels) else str(top)
        confidence = float(probabilities[top])
        verdict = Verdict(
            request_id=case.request_id,
            edge_label=case.edge_label,
            edge_confidence=case.edge_confidence,
            cloud_label=label,
            cloud_confidence=confidence,
            cloud_model=model,
            cloud_model_version=version,
            queued_at=case.enqueued,
            answered_at=self.clock(),
        )
        answer = Answer(
            label=label,
            class_index=top,
            confidence=confidence,
            source="cloud",
            edge_model=None,
            cloud_model=ModelRef(model, version),
            escalated=True,
            reason="late verdict",
            request_id=case.request_id,
            probabilities=tuple(probabilities.tolist()),
            edge_label=case.edge_label,
        )
        return verdict, answer

    def deliver(self) -> int:
        """Do the side effects still owed for stored verdicts: the telemetry record, then the
        MQTT event (only while connected; each waits for its PUBACK). Returns how many were published."""
        pending = self.verdicts.undelivered(_DELIVER_BATCH)
        if not pending:
            return 0
        unrecorded = [(rid, payload) for rid, payload, _, recorded in pending if not recorded]
        if unrecorded:
            if self.recorder is not None:
                for _, payload in unrecorded:
                    self.recorder.record(RecordKind.VERDICT, telemetry_body(payload))
                self.recorder.flush()  # committed to the telemetry buffer before it is flagged
            for rid, _ in unrecorded:
                self.verdicts.mark(rid, recorded=True)
        published = 0
        for rid, payload, was_published, _ in pending:
            if was_published:
                continue
            if self.connection is None or not self.connection.connected.is_set():
                break  # stays pending; published after the reconnect
            try:
                acked = self.connection.publish_and_wait(
                    self.topic, json.dumps(payload), self.section.publish_timeout_s, qos=1
                )
            except TransportError as exc:
                log.warning("verdict %s not published (%s); will retry", rid, exc)
                break
            if not acked:
                log.info("no PUBACK for verdict %s; will retry", rid)
                break
            self.verdicts.mark(rid, published=True)
            self.published += 1
            published += 1
        return published

    def _housekeeping(self) -> None:
        now = self.monotonic()
        if now < self._next_housekeeping:
            return
        self._next_housekeeping = now + _HOUSEKEEPING_S
        wall = self.clock()
        self.queue.expire(wall)
        self.verdicts.prune(wall)
