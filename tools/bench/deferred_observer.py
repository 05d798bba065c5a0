"""Deferred escalation on the hot path: what the cascade pays per answer for the observer.

    python -m edgecascade.tools.bench.deferred_observer [--cases 20000]

Three figures against a do-nothing observer measured in the same run: a routine answer
(not deferrable: one check), a degraded hard case (deque append of the case), and the
alternative design of committing each case synchronously to the SQLite queue (WAL,
synchronous=FULL), which is why the observer hands cases to a writer thread instead."""

from __future__ import annotations

import argparse
import tempfile
import time
from itertools import count
from pathlib import Path

import numpy as np

from edgecascade.edge.answer import Answer, ModelRef
from edgecascade.edge.cascade import CascadeRequest
from edgecascade.edge.deferred import DeferredDatabase, DeferredQueue, DeferredRecorder, QueuedCase
from edgecascade.tools.bench.stats import summary, time_calls

EDGE = ModelRef("digits-edge", "1.0.0")
ROUTINE = Answer(label="3", class_index=3, confidence=0.93, source="edge", edge_model=EDGE, request_id="r1")
DEGRADED = Answer(label="3", class_index=3, confidence=0.41, source="edge", edge_model=EDGE, escalated=True,
                  degraded=True, reason="max_prob 0.41 < 0.68; cloud breaker open", request_id="r1")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cases", type=int, default=20_000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ec-bench-deferred-"))
    features = np.random.default_rng(0).random(64, dtype=np.float32)

    def noop(request: CascadeRequest, answer: Answer, decision: object) -> None:
        return None

    def queue_at(name: str) -> DeferredQueue:
        db = DeferredDatabase(work / name)
        return DeferredQueue(db, max_cases=10**7, max_bytes=1 << 40, max_age_s=1e9)

    ids = count()
    plain = CascadeRequest(features, request_id="r1")
    base = time_calls(lambda: noop(plain, ROUTINE, None), args.cases)
    observer = DeferredRecorder(queue_at("async.sqlite3"), flush_interval_ms=50)
    observer.start()
    routine = time_calls(lambda: observer(plain, ROUTINE, None), args.cases)

    def deferrable() -> None:
        observer(CascadeRequest(features, request_id=f"q{next(ids)}"), DEGRADED, None)

    hard = time_calls(deferrable, args.cases)
    started = time.perf_counter()
    observer.stop(10.0)
    drain_s = time.perf_counter() - started
    depth = observer.queue.depth()

    sync_queue = queue_at("sync.sqlite3")

    def synchronous() -> None:
        i = next(ids)
        sync_queue.add([QueuedCase(f"s{i}", time.time(), features, "3", 0.41, "hard")])

    sync = time_calls(synchronous, min(args.cases, 2000), warmup=20)

    print(f"do-nothing observer          {summary(base)}")
    print(f"routine answer (no deferral) {summary(routine)}   x{np.median(routine) / np.median(base):.1f}")
    print(f"degraded hard case (queued)  {summary(hard)}   x{np.median(hard) / np.median(base):.1f}")
    print(f"synchronous commit per case  {summary(sync)}   x{np.median(sync) / np.median(base):.1f}")
    print(f"writer committed {depth} queued cases; the last batch took {drain_s * 1000:.1f} ms at stop")


if __name__ == "__main__":
    main()
