"""Device telemetry: added cost per inference on the hot path, and durable records per second.

    python -m edgecascade.tools.bench.telemetry_device [--records 100000]

Hot path: the observer call the cascade makes after every answer, against a do-nothing
observer in the same run. Durable rate: answers through the observer until the writer has
committed them all to the SQLite (WAL, synchronous=FULL) buffer, against one commit per record."""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from edgecascade.edge.answer import Answer, ModelRef
from edgecascade.edge.cascade import CascadeRequest
from edgecascade.edge.config.telemetry import TelemetrySection
from edgecascade.edge.telemetry.buffer import TelemetryBuffer
from edgecascade.edge.telemetry.recorder import TelemetryRecorder
from edgecascade.tools.bench.stats import summary, time_calls

ANSWER = Answer(label="3", class_index=3, confidence=0.93, source="edge", edge_model=ModelRef("digits-edge", "1"),
                latency_ms=0.21, request_id="r1")  # fmt: skip
REQUEST = CascadeRequest(np.zeros(64, np.float32), request_id="r1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=100_000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ec-bench-telemetry-"))
    section = TelemetrySection.model_validate({"max_bytes": 1 << 30})

    def noop(request: CascadeRequest, answer: Answer, decision: object) -> None:
        return None

    base = time_calls(lambda: noop(REQUEST, ANSWER, None), 50_000)
    buffer = TelemetryBuffer(work / "hot.sqlite3", max_bytes=1 << 30, max_age_s=1e9)
    recorder = TelemetryRecorder(buffer, section)
    recorder.start()
    hot = time_calls(lambda: recorder(REQUEST, ANSWER, None), 50_000)
    recorder.stop(10)
    print(f"hot path, do-nothing observer: {summary(base)}")
    print(f"hot path, telemetry observer : {summary(hot)}")
    print(f"added cost per inference     : median {np.median(hot) - np.median(base):.2f} µs")

    buffer = TelemetryBuffer(work / "rate.sqlite3", max_bytes=1 << 30, max_age_s=1e9)
    recorder = TelemetryRecorder(buffer, section)
    recorder.start()
    start = time.perf_counter()
    for _ in range(args.records):
        recorder(REQUEST, ANSWER, None)
    committed = recorder.flush()
    batched = args.records / (time.perf_counter() - start)
    recorder.stop(10)
    assert committed == args.records, committed

    single = TelemetryBuffer(work / "single.sqlite3", max_bytes=1 << 30, max_age_s=1e9)
    n = 500
    body = '{"label": "3"}'
    start = time.perf_counter()
    for _ in range(n):
        single.append([(time.time(), "inference", body)])
    unbatched = n / (time.perf_counter() - start)
    print(f"durable records/s, batched writer (synchronous=FULL): {batched:,.0f}/s ({args.records} records)")
    print(f"durable records/s, one commit per record (baseline) : {unbatched:,.0f}/s")
    print(f"ratio batched/unbatched: {batched / unbatched:.1f}x")


if __name__ == "__main__":
    main()
