"""Lookup tables and the cloud-answer cache: hit latency against the edge model's, open time
and resident memory of a 1M-entry table, and the cascade's effect on a Zipf stream.

    python -m edgecascade.tools.bench.lookup [--entries 1000000] [--requests 20000]

The 1M-entry table is synthetic (random keys and outputs, plus the content keys of the 540
held-out digits so hits are real requests): only the lookup structure is measured there. The
Zipf stream uses the real models: int8 edge TFLite model, the cloud SVC in process, and a table
the real cloud model computed for the 50 most frequent inputs."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

from edgecascade.edge.cascade import Cascade, CascadeRequest
from edgecascade.edge.cloud_client.in_process import InProcessCloudClient
from edgecascade.edge.local_model import LocalModel
from edgecascade.edge.lookup import AnswerCache, TableLookup
from edgecascade.edge.model_slot import ModelSlot
from edgecascade.edge.policies import MaxProbabilityPolicy
from edgecascade.shared.backends import BackendOptions
from edgecascade.shared.lookup import content_key, write_table
from edgecascade.tools.bench.stats import summary, time_calls
from edgecascade.tools.build_table import TableInputs, build_table
from edgecascade.tools.datasets import load_split

REPO = Path(__file__).resolve().parents[2]
MODELS = REPO / "tests" / "fixtures" / "models"

# Run in a fresh interpreter so the writer's memory does not blur the reader's RSS.
_OPEN_PROBE = """
import json, sys, time
import numpy as np
from edgecascade.shared.lookup import TableFile
def rss(field='VmRSS'):
    for line in open('/proc/self/status'):
        if line.startswith(field):
            return int(line.split()[1]) / 1024
path, verify = sys.argv[1], sys.argv[2] == '1'
before, anon0 = rss(), rss('RssAnon')
t = time.perf_counter()
table = TableFile.open(__import__('pathlib').Path(path), encoding_version=1, verify_checksum=verify)
open_ms = (time.perf_counter() - t) * 1000
after_open = rss()
rng = np.random.default_rng(1)
for i in rng.integers(0, len(table), 10000):
    table.find(table._keys[i : i + 1].tobytes())
print(json.dumps({"open_ms": open_ms, "rss_before": before, "rss_open": after_open, "rss_10k": rss(), "anon_growth": rss('RssAnon') - anon0}))
"""


def bench_table(entries: int, tmp: Path, held: np.ndarray) -> None:
    rng = np.random.default_rng(0)
    keys = rng.integers(0, 256, (entries, 16), dtype=np.uint8)
    real = np.frombuffer(b"".join(content_key(r) for r in held), dtype=np.uint8).reshape(-1, 16)
    keys[: len(real)] = real
    probs = rng.dirichlet(np.ones(10), entries).astype(np.float32)
    path = tmp / "big.ectable"
    started = time.perf_counter()
    write_table(path, keys, probs, name="synthetic", version="1", cloud_model="digits-cloud",
                cloud_model_version="1.0.0", encoding_version=1, key_scheme="content",
                labels=[str(d) for d in range(10)])  # fmt: skip
    print(f"table: {entries:,} entries, {path.stat().st_size / 2**20:.1f} MiB, "
          f"written in {time.perf_counter() - started:.1f} s")  # fmt: skip
    for verify in (True, False):
        runs = [
            json.loads(subprocess.run([sys.executable, "-c", _OPEN_PROBE, str(path), str(int(verify))],
                                      check=True, capture_output=True, text=True, cwd=REPO).stdout)
            for _ in range(5)
        ]  # fmt: skip
        med = {k: float(np.median([r[k] for r in runs])) for k in runs[0]}
        print(f"  open (CRC-32 {'checked' if verify else 'skipped'}, page cache warm): median "
              f"{med['open_ms']:.1f} ms; RSS {med['rss_before']:.1f} MiB before, +{med['rss_open'] - med['rss_before']:.2f} MiB "
              f"after open, +{med['rss_10k'] - med['rss_before']:.2f} MiB after 10k random lookups "
              f"(of which anonymous +{med['anon_growth']:.2f} MiB; the rest are clean, reclaimable mapped pages)")  # fmt: skip
    lookup = TableLookup()
    lookup.replace(path)
    requests = [CascadeRequest(r) for r in held]
    it = iter(range(10**9))
    hit = time_calls(lambda: lookup.lookup(requests[next(it) % len(requests)]), 20000)
    model = LocalModel.load(MODELS / "digits_edge_int8.tflite", BackendOptions())
    slot = ModelSlot(model)
    row = held[:1]
    base = time_calls(lambda: slot.probabilities(row), 20000)
    print(f"  table hit (content key + search + answer): {summary(hit)}")
    print(f"  edge model call (baseline, int8 TFLite):   {summary(base)}")
    print(f"  ratio model/table hit (median): {np.median(base) / np.median(hit):.1f}x")
    lookup.close()
    slot.close()


def bench_cache(tmp: Path, held: np.ndarray) -> None:
    cloud = InProcessCloudClient(MODELS / "digits_cloud.onnx")
    cache = AnswerCache(tmp / "cache.sqlite3", max_entries=10_000, max_bytes=64 << 20, ttl_s=86400)
    rng = np.random.default_rng(2)
    rows = np.concatenate([held, rng.random((10_000 - len(held), held.shape[1]), dtype=np.float32)])
    probs = cloud.probabilities(rows)
    from edgecascade.edge.answer import Answer

    for r, p in zip(rows, probs, strict=True):
        top = int(p.argmax())
        cache.remember(CascadeRequest(r), Answer(label=str(top), class_index=top, confidence=float(p[top]),
                       source="cloud", edge_model=None, cloud_model=cloud.ref, probabilities=tuple(p.tolist())))  # fmt: skip
    requests = [CascadeRequest(r) for r in held]
    it = iter(range(10**9))
    hit = time_calls(lambda: cache.lookup(requests[next(it) % len(requests)]), 5000)
    ask = time_calls(lambda: cloud.infer(held[0], request_id="b"), 5000)
    print(f"cache: {cache.stats.entries:,} entries, {cache.stats.bytes / 2**20:.1f} MiB counted")
    print(f"  cache hit (content key + SELECT + LRU UPDATE): {summary(hit)}")
    print(f"  cloud model in process (baseline, no network): {summary(ask)}")
    print(f"  ratio in-process cloud/cache hit (median): {np.median(ask) / np.median(hit):.1f}x")
    cache.close()
    cloud.close()


def bench_zipf(tmp: Path, held: np.ndarray, labels: np.ndarray, n: int) -> None:
    rng = np.random.default_rng(3)
    ranks = rng.permutation(len(held))  # item ranks[k] is the k-th most frequent
    weights = 1.0 / np.arange(1, len(held) + 1) ** 1.1
    stream = ranks[rng.choice(len(held), size=n, p=weights / weights.sum())]
    cloud_path = MODELS / "digits_cloud.onnx"
    table_path = tmp / "top50.ectable"
    build_table(cloud_path, TableInputs(held[ranks[:50]], None, "top 50"), table_path, scheme="content",
                name="top50", version="1")  # fmt: skip
    results = {}
    for name in ("no lookups", "table + cache"):
        cloud = InProcessCloudClient(cloud_path)
        slot = ModelSlot(LocalModel.load(MODELS / "digits_edge_int8.tflite", BackendOptions()))
        lookups: list = []
        cache = None
        if name != "no lookups":
            table = TableLookup()
            table.replace(table_path)
            cache = AnswerCache(tmp / f"zipf-{time.time_ns()}.sqlite3", max_entries=1000, max_bytes=8 << 20,
                                ttl_s=86400)  # fmt: skip
            lookups = [table, cache]
        cascade = Cascade(slot, MaxProbabilityPolicy(0.8), cloud=cloud, lookups=lookups,
                          cloud_sinks=[cache] if cache else [])  # fmt: skip
        started = time.perf_counter()
        answers = [cascade.answer(CascadeRequest(held[i])) for i in stream]
        elapsed = time.perf_counter() - started
        sources = Counter(a.source for a in answers)
        accuracy = float(np.mean([int(a.label) == labels[i] for a, i in zip(answers, stream, strict=True)]))
        results[name] = cloud.calls
        shares = ", ".join(f"{s} {sources[s] / n:6.1%}" for s in ("table", "cache", "edge", "cloud"))
        print(f"  {name:14s}: {shares}; cloud calls {cloud.calls:5d}; accuracy {accuracy:.2%}; "
              f"mean {elapsed / n * 1e6:.0f} µs/request")  # fmt: skip
        if cache is not None:
            cache.close()
        cloud.close()
        slot.close()
    saved = results["no lookups"] - results["table + cache"]
    print(
        f"  cloud calls saved: {saved} of {results['no lookups']} ({saved / max(results['no lookups'], 1):.1%})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--entries", type=int, default=1_000_000, help="synthetic table size")
    parser.add_argument("--requests", type=int, default=20_000, help="length of the Zipf stream")
    args = parser.parse_args()
    _, held = load_split()
    with tempfile.TemporaryDirectory() as tmp:
        bench_table(args.entries, Path(tmp), held.features)
        bench_cache(Path(tmp), held.features)
        print(f"Zipf(1.1) stream of {args.requests:,} requests over the 540 held-out digits; "
              "table = cloud answers for the 50 most frequent; policy max_prob < 0.8 escalates")  # fmt: skip
        bench_zipf(Path(tmp), held.features, held.labels, args.requests)


if __name__ == "__main__":
    main()
