"""Cascade quality and end-to-end latency on the real held-out digits.

    python -m edgecascade.tools.bench.cascade

1. Quality: edge-only, cloud-only and cascade accuracy and escalation rate, with the threshold
   the profiles ship (0.68, chosen by `edgecascade models tune` on the validation split).
   Target: cascade >= 99.5% of cloud-only accuracy while escalating <= 10%.
2. Latency: the in-process agent with the real cloud API (a subprocess on loopback, JSON and
   binary tensors), p50/p99 per source: edge-answered vs escalated."""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import requests

REPO = Path(__file__).resolve().parents[2]
MODELS = REPO / "tests" / "fixtures" / "models"
THRESHOLD = 0.68


def quality() -> None:
    from edgecascade.edge.cloud_client.in_process import InProcessCloudClient
    from edgecascade.edge.local_model import LocalModel
    from edgecascade.shared.backends import BackendOptions
    from edgecascade.tools.datasets import load_split

    _, held = load_split()
    for artifact in ("digits_edge_int8.tflite", "digits_edge_int8.onnx"):
        edge = LocalModel.load(MODELS / artifact, BackendOptions())
        cloud = InProcessCloudClient(MODELS / "digits_cloud.onnx")
        ep = edge.probabilities(held.features)
        cp = cloud.probabilities(held.features).argmax(axis=1)
        hard = ep.max(axis=1) < THRESHOLD
        cascade = np.where(hard, cp, ep.argmax(axis=1))
        edge_acc = (ep.argmax(axis=1) == held.labels).mean()
        cloud_acc = (cp == held.labels).mean()
        acc = (cascade == held.labels).mean()
        print(
            f"{artifact:24s} edge-only {edge_acc:.2%}  cloud-only {cloud_acc:.2%}  cascade {acc:.2%} "
            f"({acc / cloud_acc:.2%} of cloud-only) escalating {hard.mean():.1%} of {len(hard)}"
        )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def latency(repeats: int) -> None:
    from edgecascade.cloud.repository import seed_demo_repository
    from edgecascade.tools.datasets import load_split

    _, held = load_split()
    with tempfile.TemporaryDirectory() as tmp:
        repo = seed_demo_repository(Path(tmp) / "repo", MODELS)
        port = _free_port()
        server = _start_cloud(repo, port)
        try:
            for binary in (True, False):
                by_source = _timed_answers(Path(tmp), port, binary, held.features, repeats)
                label = "binary tensors" if binary else "JSON tensors"
                for source, values in by_source.items():
                    v = np.array(values)
                    print(
                        f"end-to-end {source:5s} answers ({label:14s}): n={v.size:5d}  p50 {np.median(v):8.1f} µs  "
                        f"p99 {np.percentile(v, 99):8.1f} µs"
                    )
        finally:
            server.terminate()
            server.wait(15)


def _start_cloud(repo: Path, port: int) -> subprocess.Popen[bytes]:
    """`edgecascade cloud serve` on `repo`, once ready (or after 30 s of trying)."""
    cmd = [sys.executable, "-m", "edgecascade", "--log-level", "WARNING", "cloud", "serve"]
    cmd += ["--repository", str(repo), "--port", str(port), "--no-auth"]
    server = subprocess.Popen(cmd, cwd=REPO)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if requests.get(f"http://127.0.0.1:{port}/v2/health/ready", timeout=0.5).status_code == 200:
                break
        except requests.ConnectionError:
            time.sleep(0.1)
    return server


def _timed_answers(
    tmp: Path, port: int, binary: bool, features: np.ndarray, repeats: int
) -> dict[str, list[float]]:
    """µs per Agent.predict of every row `repeats` times, by the answer's source."""
    from edgecascade.edge.agent import Agent
    from edgecascade.edge.config import load_profile

    profile = tmp / f"p{binary}.toml"
    profile.write_text(
        f'profile = "bench"\ndata_dir = "{tmp}/d{binary}"\nmemory_budget_mb = 200\n[model]\n'
        f'path = "{MODELS / "digits_edge_int8.tflite"}"\n[cloud]\nurl = "http://127.0.0.1:{port}"\n'
        f"binary_tensors = {str(binary).lower()}\n[lookup.cache]\nenabled = false\n"
    )
    agent = Agent.from_profile(load_profile(profile, environ={}))
    by_source: dict[str, list[float]] = {"edge": [], "cloud": []}
    for r in range(repeats):
        for i, row in enumerate(features):
            start = time.perf_counter()
            answer = agent.predict(row, request_id=f"{binary}-{r}-{i}")
            by_source[answer.source].append((time.perf_counter() - start) * 1e6)
    agent.close()
    return by_source


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=3, help="passes over the held-out set for latency")
    args = parser.parse_args()
    quality()
    latency(args.repeats)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
