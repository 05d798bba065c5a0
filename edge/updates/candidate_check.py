"""Test a candidate model in a child process before the agent loads it.

`python -m edgecascade.edge.updates.candidate_check ARTIFACT MANIFEST_JSON` loads the artifact with the real
backend and runs the manifest's golden cases (each output within the manifest's tolerance); it exits 0, or 3 after printing the reason. A bad
model can crash an interpreter outright (a segfault in native code), so the agent never loads an
untested model in its own process: a child killed by a signal or running past the timeout means
the candidate is refused and the agent keeps serving."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

from edgecascade.shared.errors import EdgecascadeError, UpdateError
from edgecascade.shared.manifest import Golden, Manifest

REFUSED = 3


def golden_mismatch(golden: Golden, run: object) -> str | None:
    """Schema 1 goldens: each vector through `run(features (1, n)) -> probs (1, k)`; the first
    mismatch, or None."""
    for i, vector in enumerate(golden.vectors):
        got = np.asarray(run(np.asarray([vector.features], dtype=np.float32)))[0]  # type: ignore[operator]
        expected = np.asarray(vector.expected, dtype=np.float32)
        if got.shape != expected.shape:
            return f"golden vector {i}: output shape {got.shape}, expected {expected.shape}"
        diff = float(np.abs(got - expected).max())
        if diff > golden.tolerance or int(got.argmax()) != int(expected.argmax()):
            return f"golden vector {i}: max difference {diff:.4f} > tolerance {golden.tolerance}"
    return None


def max_difference(got: np.ndarray, expected: np.ndarray) -> float:
    """Largest absolute element difference; NaN where both are NaN counts as equal, elsewhere as inf."""
    if expected.size == 0:
        return 0.0
    diff = np.abs(got.astype(np.float64) - expected.astype(np.float64))
    both_nan = np.isnan(got.astype(np.float64)) & np.isnan(expected.astype(np.float64))
    diff = np.where(both_nan, 0.0, diff)
    return float("inf") if np.isnan(diff).any() else float(diff.max())


def case_mismatch(
    golden: Golden, predict: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]
) -> str | None:
    """Run each golden case's inputs through `predict` (a backend's, by input name) and compare
    every expected output by name; the first mismatch, or None."""
    for i, case in enumerate(golden.cases):
        got = predict({t.name: t.to_array() for t in case.inputs})
        for tensor in case.expected:
            want = tensor.to_array()
            if tensor.name not in got:
                return f"golden case {i}: the candidate has no output {tensor.name!r} (it has {sorted(got)})"
            out = np.asarray(got[tensor.name])
            if out.shape != want.shape:
                return f"golden case {i}: output {tensor.name!r} has shape {list(out.shape)}, expected {list(want.shape)}"
            diff = max_difference(out, want)
            if diff > golden.tolerance:
                return f"golden case {i}: output {tensor.name!r} differs by {diff:.6g} > tolerance {golden.tolerance}"
    return None


def check_here(artifact: Path, manifest: Manifest) -> str | None:
    """Load and test in this process; returns a refusal reason or None. Golden cases run on the
    bare backend (shared/backends), as the fleet computed them; without goldens the candidate
    is load-tested only."""
    golden = manifest.golden
    if golden is not None and golden.cases:
        return _check_cases(artifact, manifest.backend, golden)
    from edgecascade.edge.local_model import LocalModel
    from edgecascade.shared.backends import BackendOptions

    try:
        model = LocalModel.load(artifact, BackendOptions(warmup_runs=1), manifest.backend)
    except EdgecascadeError as exc:
        return f"candidate failed to load: {exc}"
    try:
        return golden_mismatch(golden, model.probabilities) if golden is not None else None
    except EdgecascadeError as exc:
        return f"candidate failed on a golden vector: {exc}"
    finally:
        model.close()


def _check_cases(artifact: Path, backend_name: str, golden: Golden) -> str | None:
    from edgecascade.shared.backends import BackendOptions, load_backend

    try:
        backend = load_backend(artifact, BackendOptions(warmup_runs=0), backend_name)
    except EdgecascadeError as exc:
        return f"candidate failed to load: {exc}"
    try:
        return case_mismatch(golden, backend.predict)
    except EdgecascadeError as exc:
        return f"candidate failed on a golden case: {exc}"
    finally:
        backend.close()


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
        print(
            "usage: python -m edgecascade.edge.updates.candidate_check ARTIFACT MANIFEST_JSON",
            file=sys.stderr,
        )
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
