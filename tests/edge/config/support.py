"""A profile written into a test's folder, and the real CLI run as a user runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).parent.parent.parent.parent
MODEL = REPO / "tests" / "fixtures" / "models" / "digits_edge_int8"


def write_profile(folder: Path, body: str = "", *, top: str = "", name: str = "device.toml") -> Path:
    """A valid offline profile (LiteRT demo model), `top` among its top-level keys, `body`
    appended (more sections)."""
    path = folder / name
    path.write_text(
        f'profile = "test"\ndata_dir = "data"\nmemory_budget_mb = 200\n{top}'
        f'[model]\npath = "{MODEL}"\n[runtime]\nbackend_preference = ["tflite"]\n' + body
    )
    return path


def clean_env(**extra: str) -> dict[str, str]:
    """The test process's environment without any EDGECASCADE_* variable, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGECASCADE_")}
    return {**env, **extra}


def cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 60):
    """`python -m edgecascade ARGS` in a subprocess; returns the CompletedProcess (text)."""
    return subprocess.run(
        [sys.executable, "-m", "edgecascade", *args],
        capture_output=True,
        text=True,
        env=clean_env() if env is None else env,
        cwd=cwd or REPO,
        timeout=timeout,
    )
