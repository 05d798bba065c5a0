"""The hot-path side of telemetry: a cascade observer that only appends to an in-memory queue,
and a writer thread that turns the queue into records and commits them to the buffer in batches.

A record is acknowledged when the writer has committed it (see edge.telemetry.buffer). The
writer commits every `flush_interval_ms` or as soon as `flush_batch` records wait, so a crash
or power cut loses at most that window of not-yet-acknowledged records; `flush()` commits
what is queued right now (graceful shutdown, tests).

Every body is checked by `shared.telemetry.encode_body`, the rules the ingester applies: a
record the cloud would refuse (NaN or Infinity, a too-large number, a body off its schema or
over 512 KiB) never enters the buffer; it is counted as dropped for reason "invalid" (in
the drops record the cloud receives) and logged."""

from __future__ import annotations

import base64
import logging
import math
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from edgecascade.edge.answer import Answer
from edgecascade.edge.cascade import AnswerObserver, CascadeRequest
from edgecascade.edge.config.telemetry import TelemetrySection
from edgecascade.edge.flush_loop import FlushLoop
from edgecascade.edge.policies import Decision
from edgecascade.edge.telemetry.buffer import TelemetryBuffer
from edgecascade.edge.telemetry.metrics import MetricsWindow
from edgecascade.shared.errors import ProtocolError, StorageError
from edgecascade.shared.telemetry import RecordKind, encode_body

log = logging.getLogger(__name__)

_EXPIRE_EVERY_S = 10.0


class TelemetryRecorder:
    """Call the instance as an AnswerObserver; `record()` adds other kinds (verdicts, update
    status, events). A Service: `start()` runs the writer, `stop()` commits what is left."""

    name = "telemetry-recorder"

    def __init__(
        self,
        buffer: TelemetryBuffer,
        section: TelemetrySection,
        *,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self.buffer = buffer
        self.section = section
        self.clock = clock
        self._rng = rng or random.Random()
        self._queue: deque[tuple[Any, ...]] = deque()
        self._batch = section.flush_batch
        self._keep_requests = section.hard_examples.enabled
        self._write_lock = threading.Lock()
        self._loop = FlushLoop("telemetry-writer", section.flush_interval_ms / 1000.0, self.flush)
        self._window = MetricsWindow(clock())
        #: Set by the daemon: the agent's counters, added to every metrics record.
        self.counters_source: Callable[[], dict[str, float]] | None = None
        self._next_expire = clock() + _EXPIRE_EVERY_S
        self._hard_times: deque[float] = deque()
        self.sampled_out = 0  # routine records not kept by inference_sample_rate (a policy, not a loss)
        self.hard_over_cap = 0
        self.write_failures = 0
        self.lost_on_failure = 0
        self._failing = False  # the last commit failed (logged once when they work again)
        self.invalid = 0  # records refused by encode_body (counted as "invalid" drops too)
        self._invalid_by_kind: dict[str, int] = {}

    # -- hot path ---------------------------------------------------------------------------
    def __call__(self, request: CascadeRequest, answer: Answer, decision: Decision | None) -> None:
        """An AnswerObserver for answers of no named model (the record names the answering
        model only); the agent uses `observer_for(model, task)`."""
        self._observe(None, request, answer)

    def observer_for(self, model: str, task: str) -> AnswerObserver:
        """The AnswerObserver of served model `model` (a [[models]] name) of kind `task`: its
        records name the model (`served_model`, `task`). A tuple onto a deque per answer
        (thread-safe, no lock, no I/O)."""
        served = (model, task)

        def observe(request: CascadeRequest, answer: Answer, decision: Decision | None) -> None:
            self._observe(served, request, answer)

        return observe

    def _observe(self, served: tuple[str, str] | None, request: CascadeRequest, answer: Answer) -> None:
        # Hard-case records carry the encoded features: only classifiers have them.
        keep = self._keep_requests and answer.escalated and request.features.size > 0
        self._queue.append((self.clock(), answer, request if keep else None, served))
        if len(self._queue) >= self._batch:
            self._loop.wake()

    def record(self, kind: RecordKind, body: dict[str, Any]) -> None:
        """Queue a non-inference record (verdict, update status, event...); committed with the
        next batch. A body the cloud would refuse is counted and logged, never raised: a caller
        on a hot path must not fail for telemetry."""
        self._queue.append((self.clock(), kind, body, None))
        self._loop.wake()

    # -- writer -----------------------------------------------------------------------------
    def flush(self) -> int:
        """Commit everything queued so far; returns the last acknowledged sequence number."""
        with self._write_lock:
            self._write(self._take())
            self._maybe_close_window(force=False)
            return self.buffer.last_seq

    def emit_metrics(self) -> int:
        """Close the current metrics interval now (also done every metrics_interval_s)."""
        with self._write_lock:
            self._write(self._take())
            self._maybe_close_window(force=True)
            return self.buffer.last_seq

    def _take(self) -> list[tuple[Any, ...]]:
        items = []
        queue = self._queue
        for _ in range(len(queue)):
            items.append(queue.popleft())
        return items

    def _write(self, items: list[tuple[Any, ...]]) -> None:
        rows: list[tuple[float, str, str]] = []
        rate = self.section.inference_sample_rate
        for item in items:
            ts, payload, extra, served = item
            if isinstance(payload, RecordKind):
                self._encode(rows, ts, payload, extra)
                continue
            answer: Answer = payload
            self._window.add(answer.source, answer.latency_ms, answer.escalated, answer.degraded)
            special = answer.escalated or answer.degraded
            if not special and rate < 1.0 and self._rng.random() >= rate:
                self.sampled_out += 1
            else:
                self._encode(rows, ts, RecordKind.INFERENCE, _inference_body(answer, served))
            if extra is not None:
                hard = self._hard_case(ts, answer, extra, served)
                if hard is not None:
                    self._encode(rows, ts, RecordKind.HARD_CASE, hard)
        self._commit(rows)

    def _encode(
        self, rows: list[tuple[float, str, str]], ts: float, kind: RecordKind, body: dict[str, Any]
    ) -> None:
        try:
            rows.append((ts, kind.value, encode_body(kind, body)))
        except ProtocolError as exc:
            self.invalid += 1
            self._invalid_by_kind[kind.value] = self._invalid_by_kind.get(kind.value, 0) + 1
            log.warning(
                "telemetry: a %s record was refused and not kept (%d so far): %s",
                kind.value,
                self.invalid,
                exc,
            )

    def _commit(self, rows: list[tuple[float, str, str]]) -> None:
        invalid, self._invalid_by_kind = self._invalid_by_kind, {}
        try:
            if invalid:
                self.buffer.count_dropped(invalid, "invalid")
            if rows:
                self.buffer.append(rows)
        except StorageError as exc:
            # Nothing else can hold them: count and log, keep the agent answering. One line at
            # the first failure and every 100th (a full disk fails every commit), no traceback.
            self.write_failures += 1
            self.lost_on_failure += len(rows)
            if self.write_failures == 1 or self.write_failures % 100 == 0:
                log.error(
                    "telemetry: records could not be committed and are lost (%d so far, in %d "
                    "failed commits): %s",
                    self.lost_on_failure,
                    self.write_failures,
                    exc,
                )
            self._failing = True
        else:
            if self._failing:
                self._failing = False
                log.info("telemetry: records are committed again (%d lost before)", self.lost_on_failure)

    def _hard_case(
        self, ts: float, answer: Answer, request: CascadeRequest, served: tuple[str, str] | None
    ) -> dict[str, Any] | None:
        while self._hard_times and self._hard_times[0] <= ts - 60.0:
            self._hard_times.popleft()
        if len(self._hard_times) >= self.section.hard_examples.max_per_minute:
            self.hard_over_cap += 1
            return None
        self._hard_times.append(ts)
        body = _inference_body(answer, served)
        body["features"] = [float(x) for x in request.features.ravel()]
        raw = request.raw if self.section.hard_examples.include_raw else None
        body["raw_b64"] = base64.b64encode(raw).decode() if raw else None
        return body

    def _counters(self) -> dict[str, float]:
        if self.counters_source is None:
            return {}
        try:
            counters = {k: float(v) for k, v in self.counters_source().items()}
        except (
            TypeError,
            ValueError,
            RuntimeError,
        ) as exc:  # a plug-in's bad counter must not stop telemetry
            log.warning("counters for the metrics record failed: %s", exc)
            return {}
        # A NaN gauge (no data yet) must not cost the whole metrics record: leave it out.
        finite = {k: v for k, v in counters.items() if math.isfinite(v)}
        if len(finite) < len(counters):
            log.debug("metrics record: non-finite counters left out: %s", sorted(set(counters) - set(finite)))
        return finite

    def _maybe_close_window(self, *, force: bool) -> None:
        now = self.clock()
        if force or now >= self._window.start + self.section.metrics_interval_s:
            dropped = sum(self.buffer.dropped().values())
            body = self._window.close(
                now,
                buffer_records=self.buffer.depth,
                buffer_bytes=self.buffer.size_bytes,
                dropped_total=dropped,
                counters=self._counters(),
            )
            rows: list[tuple[float, str, str]] = []
            self._encode(rows, now, RecordKind.METRICS, body)
            self._commit(rows)
        if now >= self._next_expire:
            self._next_expire = now + _EXPIRE_EVERY_S
            try:
                self.buffer.expire()
            except StorageError:
                log.exception("telemetry: age expiry failed; retried in %.0f s", _EXPIRE_EVERY_S)

    def counters(self) -> dict[str, int]:
        """What did not become a record, by cause (the daemon adds these to its metrics)."""
        return {
            "invalid": self.invalid,
            "sampled_out": self.sampled_out,
            "hard_over_cap": self.hard_over_cap,
            "write_failures": self.write_failures,
            "lost_on_failure": self.lost_on_failure,
        }

    # -- Service ----------------------------------------------------------------------------
    def start(self) -> None:
        self._loop.start()

    def stop(self, timeout_s: float) -> None:
        self._loop.stop(timeout_s)
        with self._write_lock:
            self._write(self._take())
            if self._window.requests:
                self._maybe_close_window(force=True)


def _inference_body(answer: Answer, served: tuple[str, str] | None) -> dict[str, Any]:
    model = answer.cloud_model if answer.source == "cloud" and answer.cloud_model else answer.edge_model
    body: dict[str, Any] = {
        "model": model.name if model else "",
        "model_version": (answer.table_version or "") if model is None else model.version,
        "source": answer.source,
        "confidence": answer.confidence,
        "label": answer.label,
        "latency_ms": answer.latency_ms,
        "escalated": answer.escalated,
        "degraded": answer.degraded,
        "reason": answer.reason,
        "request_id": answer.request_id,
    }
    if served is not None:
        body["served_model"], body["task"] = served
        body["served_model_version"] = answer.edge_model.version if answer.edge_model else None
    return body
