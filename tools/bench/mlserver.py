"""Seldon MLServer 1.7.1 in its own virtual environment, serving ONNX models through the small
runtime in tools/bench/mlserver_runtime/, for the interoperability test and the benchmark.

    python -m edgecascade.tools.bench.mlserver install     # what `tools/dev.py setup` runs

MLServer pins fastapi<0.116 and protobuf<7, so it cannot share edgecascade's environment. uvloop
is held below 0.22: with 0.22+ MLServer 1.7.1's inference-pool workers die at start ("There is
no current event loop in thread 'MainThread'", from asyncio.get_event_loop). Standard library
only at import time, like tools/dev.py."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: Shared by the tests, the benchmark and CI (ignored by git).
VENV = ROOT / ".venv-mlserver"
RUNTIME_DIR = Path(__file__).parent / "mlserver_runtime"
PINS = ["mlserver==1.7.1", "onnxruntime", "numpy<2.3", "uvloop<0.22"]
_STAMP = ".edgecascade-recipe"


#: pip's words for "the package index cannot be reached" (as opposed to a broken install).
_OFFLINE = (
    "NewConnectionError",
    "Max retries exceeded",
    "Network is unreachable",
    "Temporary failure in name resolution",
    "No matching distribution found",
    "Could not find a version that satisfies",
)


class IndexUnreachable(RuntimeError):
    """pip could not reach a package index that has MLServer."""


def _recipe_digest() -> str:
    return hashlib.sha256("\n".join(PINS).encode()).hexdigest()


def installed() -> Path | None:
    """The `mlserver` executable if the venv holds exactly this recipe."""
    exe = VENV / "bin" / "mlserver"
    stamp = VENV / _STAMP
    if exe.exists() and stamp.exists() and stamp.read_text() == _recipe_digest():
        return exe
    return None


def install(timeout_s: float = 900.0) -> Path:
    """Create or update the venv (a no-op when it is current). Raises IndexUnreachable when
    pip cannot reach an index with MLServer, RuntimeError (pip's last lines) for other failures."""
    exe = installed()
    if exe is not None:
        return exe
    print(f"[mlserver] installing {' '.join(PINS)} into {VENV} (one time)", flush=True)
    if not (VENV / "bin" / "python").exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    try:
        done = subprocess.run(
            [str(VENV / "bin" / "python"), "-m", "pip", "install", "--quiet", *PINS],
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"pip install of MLServer did not finish in {timeout_s:.0f}s") from None
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-5:])
        error = IndexUnreachable if any(m in done.stderr for m in _OFFLINE) else RuntimeError
        raise error(f"pip install of MLServer failed (exit {done.returncode}):\n{tail}")
    (VENV / _STAMP).write_text(_recipe_digest())
    return VENV / "bin" / "mlserver"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_repository(
    folder: Path, models: dict[str, tuple[Path, dict[str, object]]], *, http_port: int, grpc_port: int
) -> Path:
    """An MLServer repository: settings.json with the ports, and per model a folder with its
    model-settings.json (`models`: name -> (onnx path, extra settings such as max_batch_size))."""
    folder.mkdir(parents=True, exist_ok=True)
    settings = {"http_port": http_port, "grpc_port": grpc_port, "metrics_port": free_port(), "debug": False}
    (folder / "settings.json").write_text(json.dumps(settings))
    for name, (path, extra) in models.items():
        model_dir = folder / name
        model_dir.mkdir()
        doc = {
            "name": name,
            "implementation": "onnx_runtime.OnnxModel",
            "parameters": {"uri": str(path)},
            **extra,
        }
        (model_dir / "model-settings.json").write_text(json.dumps(doc))
    return folder


class MlServerProcess:
    """`mlserver start <repository>` on free loopback ports; `start()` waits for readiness."""

    def __init__(self, exe: Path, models: dict[str, tuple[Path, dict[str, object]]], workdir: Path) -> None:
        self.http_port, self.grpc_port = free_port(), free_port()
        self.repository = write_repository(
            workdir / "mlserver-repo", models, http_port=self.http_port, grpc_port=self.grpc_port
        )
        self.exe = exe
        self.workdir = workdir
        self.log_path = workdir / "mlserver.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def start(self, timeout_s: float = 120.0) -> MlServerProcess:
        env = {**os.environ, "PYTHONPATH": str(RUNTIME_DIR)}
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                # cwd: MLServer writes its metrics files (.metrics/) into the working directory.
                [str(self.exe), "start", str(self.repository)],
                cwd=self.workdir,
                env=env,
                stdout=log,
                stderr=log,
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"MLServer exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.url + "/v2/health/ready", timeout=2) as resp:
                    if resp.status == 200:
                        return self
            except (urllib.error.URLError, OSError):  # still starting
                pass
            time.sleep(0.25)
        self.stop()
        raise TimeoutError(f"MLServer not ready after {timeout_s}s:\n{self.log_tail()}")

    def stop(self, timeout_s: float = 30.0) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("command", choices=["install"])
    parser.parse_args(argv)
    try:
        print(f"[mlserver] ready: {install()}")
    except RuntimeError as exc:
        print(f"[mlserver] not installed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
