"""Escalation rate under drift: the tuned static threshold against the adaptive controller.

    python -m edgecascade.tools.bench.drift [--target 0.10] [--repeats 3] [--window 200] [--png drift.png]

Real parts: the int8 edge TFLite model, the cloud SVC in process, the real cascade, and a
stream of the held-out digits that drifts (clean, blurred, noisy, clean; tools/drift_data.py).
Reports the escalation rate per segment (all requests, and settled: after the first `window`
requests of a segment), |achieved - target| in points, cascade accuracy, cloud calls, and the
per-call cost of `decide()` (adaptive against static, same run)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgecascade.edge.cascade import Cascade, CascadeRequest
from edgecascade.edge.cloud_client.in_process import InProcessCloudClient
from edgecascade.edge.local_model import LocalModel
from edgecascade.edge.model_slot import ModelSlot
from edgecascade.edge.policies import EscalationPolicy, MaxProbabilityPolicy
from edgecascade.edge.policies.adaptive import AdaptiveThresholdPolicy
from edgecascade.shared.backends import BackendOptions
from edgecascade.tools.bench.stats import summary, time_calls
from edgecascade.tools.datasets import load_split
from edgecascade.tools.drift_data import DriftStream, drift_stream

REPO = Path(__file__).resolve().parents[2]
MODELS = REPO / "tests" / "fixtures" / "models"
STATIC_THRESHOLD = 0.68  # `edgecascade models tune` on the validation split


@dataclass
class Run:
    name: str
    escalated: np.ndarray  # per request
    correct: np.ndarray
    thresholds: np.ndarray
    cloud_calls: int


class _Clock:
    """Simulated arrival time: `rps` requests a second (for the per-minute cap)."""

    def __init__(self, rps: float) -> None:
        self.rps = rps
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def run(name: str, policy: EscalationPolicy, stream: DriftStream, clock: _Clock | None = None) -> Run:
    edge = LocalModel.load(MODELS / "digits_edge_int8.tflite", BackendOptions(warmup_runs=0))
    cloud = InProcessCloudClient(MODELS / "digits_cloud.onnx")
    cascade = Cascade(ModelSlot(edge), policy, cloud=cloud)
    n = len(stream.labels)
    escalated, correct, thresholds = np.zeros(n, bool), np.zeros(n, bool), np.zeros(n)
    for i in range(n):
        if clock is not None:
            clock.now = i / clock.rps
        answer = cascade.answer(CascadeRequest(stream.features[i], request_id=str(i)))
        escalated[i] = answer.escalated
        correct[i] = answer.class_index == stream.labels[i]
        thresholds[i] = getattr(policy, "threshold", np.nan)
    calls = cloud.calls
    cascade.slot.close()
    cloud.close()
    return Run(name, escalated, correct, thresholds, calls)


def table(runs: list[Run], stream: DriftStream, target: float, settle: int) -> tuple[str, bool]:
    lines = [f"{'segment':14s} {'n':>5s} " + " ".join(f"{r.name + ' esc':>16s}" for r in runs)]
    lines[0] += " " + " ".join(f"{r.name + ' settled':>18s}" for r in runs)
    lines[0] += " " + " ".join(f"{r.name + ' acc':>14s}" for r in runs)
    ok = True
    for index, segment in enumerate(stream.segments):
        mask = stream.segment == index
        settled = mask.copy()
        settled[np.flatnonzero(mask)[:settle]] = False
        row = f"{segment.name:14s} {mask.sum():5d} "
        row += " ".join(f"{r.escalated[mask].mean():16.1%}" for r in runs)
        parts = []
        for r in runs:
            rate = r.escalated[settled].mean()
            off = abs(rate - target) * 100
            parts.append(f"{rate:9.1%} ({off:4.1f} pt)")
            if r.name == "adaptive" and off > 2.0:
                ok = False
        row += " " + " ".join(f"{p:>18s}" for p in parts)
        row += " " + " ".join(f"{r.correct[mask].mean():14.2%}" for r in runs)
        lines.append(row)
    row = f"{'overall':14s} {len(stream.labels):5d} "
    row += " ".join(f"{r.escalated.mean():16.1%}" for r in runs)
    row += " " + " ".join(f"{abs(r.escalated.mean() - target) * 100:14.1f} pt" for r in runs)
    row += " " + " ".join(f"{r.correct.mean():14.2%}" for r in runs)
    lines.append(row)
    lines.append("cloud calls: " + ", ".join(f"{r.name} {r.cloud_calls}" for r in runs))
    return "\n".join(lines), ok


def decide_cost(target: float, window: int) -> str:
    _, held = load_split()
    edge = LocalModel.load(MODELS / "digits_edge_int8.tflite", BackendOptions(warmup_runs=0))
    rows = edge.probabilities(held.features)
    edge.close()
    static = MaxProbabilityPolicy(STATIC_THRESHOLD)
    adaptive = AdaptiveThresholdPolicy(
        MaxProbabilityPolicy(STATIC_THRESHOLD), target_rate=target, window=window, seed=0
    )
    it = iter(range(10**9))
    t_static = time_calls(lambda: static.decide(rows[next(it) % len(rows)]), 20000)
    t_adapt = time_calls(lambda: adaptive.decide(rows[next(it) % len(rows)]), 20000)
    ratio = np.median(t_adapt) / np.median(t_static)
    return (
        f"decide() static   {summary(t_static)}\n"
        f"decide() adaptive {summary(t_adapt)}   ratio {ratio:.2f}x (median)"
    )


def plot(runs: list[Run], stream: DriftStream, target: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4))
    k = 200
    for r in runs:
        rolling = np.convolve(r.escalated.astype(float), np.ones(k) / k, mode="valid")
        ax.plot(np.arange(k - 1, len(r.escalated)), rolling, label=f"{r.name} (rolling {k})")
    ax.axhline(target, color="k", ls="--", lw=1, label="target")
    for index in range(1, len(stream.segments)):
        ax.axvline(int(np.flatnonzero(stream.segment == index)[0]), color="grey", lw=0.8)
    ax.set_xlabel("request")
    ax.set_ylabel("escalation rate")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def _adaptive(target: float, window: int, **capped: Any) -> AdaptiveThresholdPolicy:
    """The adaptive policy as the benchmark runs it, around the profiles' static threshold."""
    return AdaptiveThresholdPolicy(
        MaxProbabilityPolicy(STATIC_THRESHOLD),
        target_rate=target,
        min_threshold=0.2,
        max_threshold=0.95,
        window=window,
        seed=0,
        **capped,
    )


def _capped_run(stream: DriftStream, target: float, window: int, cap: int, rps: float) -> Run:
    """The adaptive policy held to `cap` cloud calls a minute, at `rps` simulated requests/s."""
    clock = _Clock(rps)
    result = run("capped", _adaptive(target, window, max_per_minute=cap, clock=clock), stream, clock)
    aim = min(target, cap / (rps * 60))
    print(
        f"capped: {cap} cloud calls/min at {rps:g} requests/s: aims at {aim:.1%} "
        "(its 'pt' column is against the uncapped target)"
    )
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--target", type=float, default=0.10, help="target escalation rate")
    parser.add_argument("--repeats", type=int, default=3, help="held-out set repeats per segment")
    parser.add_argument("--window", type=int, default=200, help="adaptive window (requests)")
    parser.add_argument("--cap", type=int, help="also run adaptive with this many cloud calls a minute")
    parser.add_argument("--rps", type=float, default=5.0, help="simulated arrival rate for --cap")
    parser.add_argument("--png", type=Path, help="save a plot of the rolling escalation rate")
    args = parser.parse_args(argv)

    _, held = load_split()
    stream = drift_stream(held, repeats_per_segment=args.repeats)
    print(
        f"stream: {len(stream.labels)} real held-out digits in segments "
        + ", ".join(s.name for s in stream.segments)
        + f"; target {args.target:.0%}, adaptive window {args.window}"
    )
    adaptive = _adaptive(args.target, args.window)
    runs = [
        run("static", MaxProbabilityPolicy(STATIC_THRESHOLD), stream),
        run("adaptive", adaptive, stream),
    ]
    if args.cap:
        runs.append(_capped_run(stream, args.target, args.window, args.cap, args.rps))
    text, ok = table(runs, stream, args.target, args.window)
    print(text)
    print(
        "adaptive threshold range: "
        f"{np.nanmin(runs[1].thresholds):.3f}..{np.nanmax(runs[1].thresholds):.3f}; "
        f"stats at end: {adaptive.stats()}"
    )
    print(decide_cost(args.target, args.window))
    print(f"adaptive within ±2 points of target in every settled segment: {'yes' if ok else 'NO'}")
    if args.png:
        plot(runs, stream, args.target, args.png)
        print(f"plot saved to {args.png}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
