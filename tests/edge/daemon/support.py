"""Start the real daemon (`python -m edgecascade agent run`) as a subprocess for tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

from edgecascade.tools.mqtt_broker import free_port

REPO = Path(__file__).resolve().parents[3]
MODELS = REPO / "tests" / "fixtures" / "models"


def write_profile(
    tmp: Path,
    *,
    device: str = "dev-1",
    cloud_url: str | None = None,
    broker_port: int | None = None,
    extra: str = "",
    threshold: float = 0.68,
    api_port: int | None = None,
    api_extra: str = "",
) -> Path:
    path = tmp / f"{device}.toml"
    lines = [
        'profile = "test-pc"',
        f'device_id = "{device}"',
        'fleet = "t"',
        f'data_dir = "{tmp / device}"',
        "memory_budget_mb = 300",
        "[model]",
        f'path = "{MODELS / "digits_edge_int8.tflite"}"',
        "[cascade]",
        f'policies = [{{ kind = "max_prob", threshold = {threshold} }}]',
        "[api]",
        f"port = {api_port or free_port()}",
        api_extra,
    ]
    if cloud_url:
        lines += ["[cloud]", f'url = "{cloud_url}"', "deadline_s = 3.0", "read_timeout_s = 2.5"]
    if broker_port:
        lines += ["[mqtt]", "enabled = true", f"port = {broker_port}"]
    path.write_text("\n".join(lines) + "\n" + extra)
    return path


class DaemonProcess:
    def __init__(self, profile: Path, api_port: int, log: Path, env: dict[str, str] | None = None) -> None:
        self.profile, self.port, self.log = profile, api_port, log
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 30.0) -> DaemonProcess:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "edgecascade", "agent", "run", "--config", str(self.profile)],
                cwd=REPO,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
            try:
                if requests.get(self.url + "/v2/health/ready", timeout=0.5).status_code == 200:
                    return self
            except requests.ConnectionError:
                pass
            time.sleep(0.05)
        raise TimeoutError(self.log.read_text()[-3000:])

    def signal(self, sig: int = signal.SIGTERM) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait(self, timeout_s: float = 20.0) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout_s)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def rss_mib(self) -> float:
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024
        raise AssertionError("no VmRSS")
