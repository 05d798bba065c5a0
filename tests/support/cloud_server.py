"""The real cloud API as a subprocess (`python -m edgecascade cloud serve ...`) on a free
loopback port, for tests of the server and of device-side clients. `stop()` and `start()`
keep the port, so a client sees the cloud go away and come back."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests

from edgecascade.tools.mqtt_broker import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]


class CloudServer:
    """`tokens` maps device id -> token (passed via EDGECASCADE_SERVE__TOKENS); with neither
    tokens nor tokens_file the server runs with --no-auth. `debug_delay_ms` slows every inference."""

    def __init__(
        self,
        repository: Path,
        *,
        port: int | None = None,
        workers: int = 1,
        tokens: dict[str, str] | None = None,
        tokens_file: Path | None = None,
        debug_delay_ms: float = 0.0,
        graceful_timeout_s: float = 10.0,
        extra_args: tuple[str, ...] = (),
        log_path: Path | None = None,
        grpc: bool = False,
        tls: tuple[Path, Path] | None = None,
        tls_client_ca: Path | None = None,
        ca_file: Path | None = None,
    ) -> None:
        """`grpc`: also serve V2 gRPC on a free port (`grpc_target`). `tls`: (certificate, key)
        to serve HTTPS; `ca_file` verifies it while waiting for readiness; `tls_client_ca`
        enables client-certificate authentication."""
        self.repository = repository
        self.port = port or free_port()
        self.workers = workers
        self.tokens = tokens
        self.tokens_file = tokens_file
        self.debug_delay_ms = debug_delay_ms
        self.graceful_timeout_s = graceful_timeout_s
        self.extra_args = extra_args
        self.log_path = log_path or Path(repository).parent / f"cloud-server-{self.port}.log"
        self.grpc_port = free_port() if grpc else None
        self.tls = tls
        self.tls_client_ca = tls_client_ca
        self.ca_file = ca_file
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    @property
    def grpc_target(self) -> str:
        """host:port of the gRPC service (raises if it was not asked for)."""
        if self.grpc_port is None:
            raise RuntimeError("CloudServer(grpc=True) serves gRPC")
        return f"127.0.0.1:{self.grpc_port}"

    def command(self) -> list[str]:
        cmd = [sys.executable, "-m", "edgecascade", "--log-level", "INFO", "cloud", "serve"]
        cmd += ["--repository", str(self.repository), "--port", str(self.port)]
        cmd += ["--workers", str(self.workers), "--graceful-timeout-s", str(self.graceful_timeout_s)]
        if self.tokens_file is not None:
            cmd += ["--tokens-file", str(self.tokens_file)]
        if self.tokens is None and self.tokens_file is None:
            cmd.append("--no-auth")
        if self.debug_delay_ms:
            cmd += ["--debug-delay-ms", str(self.debug_delay_ms)]
        if self.grpc_port is not None:
            cmd += ["--grpc-port", str(self.grpc_port)]
        if self.tls is not None:
            cmd += ["--tls-certfile", str(self.tls[0]), "--tls-keyfile", str(self.tls[1])]
        if self.tls_client_ca is not None:
            cmd += ["--tls-client-ca", str(self.tls_client_ca)]
        return cmd + list(self.extra_args)

    def start(self, timeout_s: float = 30.0) -> CloudServer:
        """Start and wait until /v2/health/ready answers 200; raises with the log tail if it dies."""
        env = dict(os.environ)
        env.pop("EDGECASCADE_SERVE__TOKENS", None)
        if self.tokens:
            env["EDGECASCADE_SERVE__TOKENS"] = ",".join(f"{d}={t}" for d, t in self.tokens.items())
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.command(), cwd=REPO_ROOT, env=env, stdout=log, stderr=log)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"cloud server exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                verify: bool | str = str(self.ca_file) if self.ca_file else True
                if requests.get(self.url + "/v2/health/ready", timeout=0.5, verify=verify).status_code == 200:
                    return self
            except requests.ConnectionError:
                pass
            time.sleep(0.05)
        self.stop()
        raise TimeoutError(f"cloud server not ready after {timeout_s}s:\n{self.log_tail()}")

    def terminate(self) -> None:
        """Send SIGTERM (graceful shutdown) without waiting."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def stop(self, timeout_s: float = 15.0) -> int | None:
        """SIGTERM, wait for a graceful exit (SIGKILL after `timeout_s`); the exit code."""
        if self.proc is None:
            return None
        self.terminate()
        try:
            code = self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self.proc = None
        return code

    def restart(self) -> CloudServer:
        self.stop()
        return self.start()

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""


@contextmanager
def cloud_server(repository: Path, **kwargs: object) -> Iterator[CloudServer]:
    """A started CloudServer, stopped on exit."""
    server = CloudServer(repository, **kwargs)  # type: ignore[arg-type]
    server.start()
    try:
        yield server
    finally:
        server.stop()
