"""The hot-path side of deferred escalation: a cascade observer that picks out degraded hard
cases and appends them to an in-memory deque, and a writer thread that commits them to the
durable queue in batches (the telemetry recorder's shape and durability policy).

A case is durable once the writer has committed it: at most `flush_interval_ms` worth of
cases can be lost to a crash or power cut. `flush()` commits what is queued right now."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable

import numpy as np

from edgecascade.edge.answer import Answer
from edgecascade.edge.cascade import CascadeRequest
from edgecascade.edge.deferred.queue import DeferredQueue, QueuedCase
from edgecascade.edge.flush_loop import FlushLoop
from edgecascade.edge.policies import Decision
from edgecascade.shared.errors import StorageError

log = logging.getLogger(__name__)

_BATCH = 256


def is_deferrable(answer: Answer) -> bool:
    """A hard case answered locally because the cloud could not be asked: unreachable,
    breaker open, auth failed (escalated + degraded), or refused by the escalation budget."""
    if not answer.degraded:
        return False
    return answer.escalated or "over escalation" in answer.reason


class DeferredRecorder:
    """Call the instance as an AnswerObserver. A Service: `start()` runs the writer,
    `stop()` commits what is left. `keep_raw`: also queue the raw input."""

    name = "deferred-recorder"

    def __init__(
        self,
        queue: DeferredQueue,
        *,
        keep_raw: bool = False,
        flush_interval_ms: int = 50,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.queue = queue
        self.keep_raw = keep_raw
        self.interval_s = flush_interval_ms / 1000.0
        self.clock = clock
        self._pending: deque[QueuedCase] = deque()
        self._write_lock = threading.Lock()
        self._loop = FlushLoop("deferred-writer", self.interval_s, self.flush)
        self.seen = 0  # deferrable answers observed
        self.unnamed = 0  # of them, requests without an id (one was made up)
        self.lost_on_failure = 0

    def __call__(self, request: CascadeRequest, answer: Answer, decision: Decision | None) -> None:
        """The AnswerObserver: a cheap check, and for a deferrable case one deque append."""
        if not is_deferrable(answer):
            return
        request_id = request.request_id
        if not request_id:
            # The caller cannot ask for this verdict, but MQTT, telemetry and the cache still get it.
            request_id = f"deferred-{uuid.uuid4().hex}"
            self.unnamed += 1
        self.seen += 1
        self._pending.append(
            QueuedCase(
                request_id=request_id,
                enqueued=self.clock(),
                features=np.asarray(request.features, dtype=np.float32),
                edge_label=answer.label,
                edge_confidence=answer.confidence,
                reason=answer.reason,
                raw=request.raw if self.keep_raw else None,
            )
        )
        if len(self._pending) >= _BATCH:
            self._loop.wake()

    def flush(self) -> int:
        """Commit every case observed so far; returns how many were newly queued."""
        with self._write_lock:
            cases = [self._pending.popleft() for _ in range(len(self._pending))]
            if not cases:
                return 0
            try:
                return self.queue.add(cases)
            except StorageError:
                self.lost_on_failure += len(cases)
                log.exception("deferred: %d hard cases could not be queued and are lost", len(cases))
                return 0

    def start(self) -> None:
        self._loop.start()

    def stop(self, timeout_s: float) -> None:
        self._loop.stop(timeout_s)
        self.flush()
