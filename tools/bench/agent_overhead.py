"""What the agent adds over the bare interpreter call, for both backends, on the same model
and inputs, in one run; and the peak RSS of a process running the agent with the demo model.

    python -m edgecascade.tools.bench.agent_overhead [--calls 20000]

Bare call: the runtime's own API with an input already in the model's dtype (TFLite:
set_tensor/invoke/get_tensor; ONNX Runtime: session.run). Agent call: Agent.predict() on a
float feature row: signature check, quantize, run, dequantize, escalation policy, budget,
provenance. Calls interleave in rounds so machine noise hits both alike."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np

from edgecascade.tools.bench.stats import summary, time_calls

REPO = Path(__file__).resolve().parents[2]
MODELS = REPO / "tests" / "fixtures" / "models"


def _profile(tmp: Path, artifact: str) -> Path:
    path = tmp / f"bench-{artifact}.toml"
    path.write_text(
        f'profile = "bench"\ndata_dir = "{tmp}"\nmemory_budget_mb = 120\n'
        f'[model]\npath = "{MODELS / artifact}"\n'
        # threshold 0: nothing escalates, we measure the local path
        '[cascade]\npolicies = [{ kind = "max_prob", threshold = 0.0 }]\n'
    )
    return path


def bare_tflite(features: np.ndarray) -> Callable[[], object]:
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(MODELS / "digits_edge_int8.tflite"), num_threads=1)
    interp.allocate_tensors()
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    scale, zp = inp["quantization"]
    x = np.clip(np.round(features[None, :] / scale) + zp, -128, 127).astype(np.int8)
    idx_in, idx_out = inp["index"], out["index"]

    def call() -> object:
        interp.set_tensor(idx_in, x)
        interp.invoke()
        return interp.get_tensor(idx_out)

    return call


def bare_onnx(features: np.ndarray) -> Callable[[], object]:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    session = ort.InferenceSession(
        str(MODELS / "digits_edge_int8.onnx"), so, providers=["CPUExecutionProvider"]
    )
    x = features[None, :].astype(np.float32)
    return lambda: session.run(None, {"input": x})


def measure(calls: int, tmp: Path) -> list[dict[str, object]]:
    from edgecascade.edge.agent import Agent
    from edgecascade.edge.config import load_profile
    from edgecascade.tools.datasets import load_split

    _, held = load_split()
    row = held.features[0]
    results = []
    for name, artifact, bare_factory in (
        ("tflite (LiteRT)", "digits_edge_int8.tflite", bare_tflite),
        ("onnx (ORT)", "digits_edge_int8.onnx", bare_onnx),
    ):
        agent = Agent.from_profile(load_profile(_profile(tmp, artifact), environ={}))
        bare = bare_factory(row)
        bare_t, agent_t = [], []
        for _ in range(5):  # interleaved rounds
            bare_t.append(time_calls(bare, calls // 5))
            agent_t.append(time_calls(partial(agent.predict, row), calls // 5))
        b, a = np.concatenate(bare_t), np.concatenate(agent_t)
        overhead = float(np.median(a) - np.median(b))
        print(f"{name:16s} bare  {summary(b)}")
        print(
            f"{name:16s} agent {summary(a)}   overhead {overhead:+.2f} µs (target <= 25)   ratio {np.median(a) / np.median(b):.2f}x"
        )
        results.append(
            {
                "backend": name,
                "bare_median_us": float(np.median(b)),
                "agent_median_us": float(np.median(a)),
                "bare_p99_us": float(np.percentile(b, 99)),
                "agent_p99_us": float(np.percentile(a, 99)),
                "overhead_us": overhead,
            }
        )
        agent.close()
    return results


# A fresh process: what the agent itself needs (no scikit-learn: that is not on a device).
# VmHWM, not ru_maxrss: Linux carries the parent's ru_maxrss across fork+exec.
RSS_CHILD = """
import sys
import numpy as np
from edgecascade.edge.agent import Agent
from edgecascade.edge.config import load_profile
agent = Agent.from_profile(load_profile(sys.argv[1], environ={}))
rows = np.random.default_rng(0).random((2000, 64), dtype=np.float32)
for row in rows:
    agent.predict(row)
hwm = next(line for line in open("/proc/self/status") if line.startswith("VmHWM"))
print(int(hwm.split()[1]) / 1024)
"""


def peak_rss(tmp: Path) -> dict[str, float]:
    out = {}
    for artifact in ("digits_edge_int8.tflite", "digits_edge_int8.onnx"):
        proc = subprocess.run(
            [sys.executable, "-c", RSS_CHILD, str(_profile(tmp, artifact))],
            capture_output=True,
            text=True,
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            check=True,
        )
        out[artifact] = float(proc.stdout.strip().splitlines()[-1])
        print(f"peak RSS, agent process with {artifact}: {out[artifact]:.1f} MiB (target < 120)")
    return out


def main() -> int:
    import tempfile

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        results = measure(args.calls, Path(tmp))
        rss = peak_rss(Path(tmp))
    if args.json:
        args.json.write_text(json.dumps({"calls": results, "peak_rss_mib": rss}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
