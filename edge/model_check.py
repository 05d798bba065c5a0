"""Load every model of a profile in a child process before the daemon loads them itself.

A third-party model can crash an interpreter outright (a segfault in native code, seen with
real models on tflite-runtime). `python -m edgecascade.edge.model_check PATH[@BACKEND]...`
loads each model with its card (and the card check) and runs the backend's warm-up; it exits
0, or 3 after printing the reason. A child killed by a signal or running past the timeout
means the model never serves, and the daemon refuses to start, naming the file."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from edgecascade.shared.errors import EdgecascadeError, ModelError, ModelLoadError

REFUSED = 3


def check_in_child(models: list[tuple[Path, str | None]], timeout_s: float = 60.0) -> None:
    """Raise ModelLoadError naming the model (and the reason) if any fails to load in a child."""
    if not models:
        return
    cmd = [sys.executable, "-m", "edgecascade.edge.model_check"]
    cmd += [f"{path}@{backend}" if backend else str(path) for path, backend in models]
    where = ", ".join(str(p) for p, _ in models)
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise ModelLoadError(
            where, f"loading did not finish within {timeout_s:.0f}s in a check process"
        ) from None
    if done.returncode == 0:
        return
    if done.returncode < 0:
        name = signal.Signals(-done.returncode).name
        last = done.stdout.strip().splitlines()[-1:]  # the model being loaded when it crashed
        raise ModelLoadError(
            last[0].removeprefix("checking ") if last else where,
            f"crashed its interpreter ({name}) in a check process",
        )
    reason = done.stdout.strip().splitlines()[-1:] or done.stderr.strip().splitlines()[-1:]
    # The child's last line is already "cannot load model <file>: <why>" for a refusal.
    raise ModelError(
        reason[0] if reason else f"cannot load model {where}: check exited with {done.returncode}"
    )


def main(argv: list[str]) -> int:
    from edgecascade.edge.local_model import LocalModel
    from edgecascade.shared.backends import BackendOptions

    for arg in argv:
        path, _, backend = arg.partition("@")
        print(f"checking {path}", flush=True)
        try:
            LocalModel.load(Path(path), BackendOptions(warmup_runs=1), backend or None).close()
        except EdgecascadeError as exc:
            print(str(exc), flush=True)
            return REFUSED
        except Exception as exc:  # a runtime's own error escaping the backend: still a refusal
            print(f"cannot load model {path}: {type(exc).__name__}: {exc}", flush=True)
            return REFUSED
    print("ok", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
