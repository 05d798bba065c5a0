"""Test a candidate model in a child process before the agent loads it.

`python -m edgecascade.edge.updates.candidate_check ARTIFACT MANIFEST_JSON` loads the artifact with the real
backend and runs the manifest's golden vectors; it exits 0, or 3 after printing the reason. A bad
model can crash an interpreter outright (a segfault in native code), so the agent never loads an
untested model in its own process: a child killed by a signal or running past the timeout means
the candidate is refused and the agent keeps serving."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import numpy as np

from edgecascade.shared.errors import EdgecascadeError, UpdateError
from edgecascade.shared.manifest import Golden, Manifest

REFUSED = 3


def golden_mismatch(golden: Golden, run: object) -> str | None:
    """Run each golden vector through `run(features (1, n)) -> probs (1, k)`; the first mismatch, or None."""
    for i, vector in enumerate(golden.vectors):
        got = np.asarray(run(np.asarray([vector.features], dtype=np.float32)))[0]  # type: ignore[operator]
        expected = np.asarray(vector.expected, dtype=np.float32)
        if got.shape != expected.shape:
            return f"golden vector {i}: output shape {got.shape}, expected {expected.shape}"
        diff = float(np.abs(got - expected).max())
        if diff > golden.tolerance or int(got.argmax()) != int(expected.argmax()):
            return f"golden vector {i}: max difference {diff:.4f} > tolerance {golden.tolerance}"
    return None


def check_here(artifact: Path, manifest: Manifest) -> str | None:
    """Load and test in this process; returns a refusal reason or None."""
    from edgecascade.edge.local_model import LocalModel
    from edgecascade.shared.backends import BackendOptions

    try:
        model = LocalModel.load(artifact, BackendOptions(warmup_runs=1), manifest.backend)
    except EdgecascadeError as exc:
        return f"candidate failed to load: {exc}"
    try:
        return golden_mismatch(manifest.golden, model.probabilities)
    except EdgecascadeError as exc:
        return f"candidate failed on a golden vector: {exc}"
    finally:
        model.close()


def check_in_child(
    artifact: Path, manifest_path: Path, timeout_s: float, python: list[str] | None = None
) -> None:
    """Run the check in a child process. Raises UpdateError with the reason on any refusal.
    `python` replaces the interpreter command (e.g. to run the check under another runtime)."""
    cmd = [
        *(python or [sys.executable]),
        "-m",
        "edgecascade.edge.updates.candidate_check",
        str(artifact),
        str(manifest_path),
    ]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise UpdateError(f"candidate check did not finish within {timeout_s:.0f}s") from None
    if done.returncode == 0:
        return
    if done.returncode < 0:
        name = signal.Signals(-done.returncode).name
        raise UpdateError(f"candidate crashed its interpreter ({name}) in the test process")
    reason = done.stdout.strip().splitlines()[-1:] or done.stderr.strip().splitlines()[-1:]
    raise UpdateError(reason[0] if reason else f"candidate check exited with {done.returncode}")


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m edgecascade.edge.updates.candidate_check ARTIFACT MANIFEST_JSON", file=sys.stderr)
        return 2
    try:
        manifest = Manifest.model_validate_json(Path(argv[1]).read_bytes())
    except (OSError, ValueError) as exc:
        print(f"unreadable manifest: {exc}")
        return REFUSED
    reason = check_here(Path(argv[0]), manifest)
    if reason:
        print(reason)
        return REFUSED
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
