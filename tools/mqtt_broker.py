"""Start a real MQTT broker on a loopback port: Mosquitto if installed, else amqtt (pure Python,
MQTT 3.1.1 only). Used by the demo and by tests, which stop and restart it to cut the network."""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

log = logging.getLogger(__name__)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, timeout_s: float = 10.0, host: str = "127.0.0.1") -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {host}:{port} after {timeout_s}s")


class BrokerProcess:
    """A broker subprocess. `start()`, `stop()` and `restart()` keep the same port, so clients
    reconnect to it; `extra_config` lines are appended to the Mosquitto config (ACLs, TLS)."""

    def __init__(
        self,
        port: int | None = None,
        *,
        extra_config: str = "",
        workdir: Path | None = None,
        prefer: str | None = None,
        persistent: bool = False,
    ) -> None:
        self.port = port or free_port()
        self.extra_config = extra_config
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="edgecascade-broker-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        # Persistent: sessions and queued QoS 1 messages survive a broker restart (Mosquitto only),
        # as a production broker should be configured.
        self.persistent = persistent
        self.kind = prefer or ("mosquitto" if shutil.which("mosquitto") else "amqtt")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def supports_mqtt5(self) -> bool:
        return self.kind == "mosquitto"

    def _command(self) -> list[str]:
        if self.kind == "mosquitto":
            conf = self.workdir / "mosquitto.conf"
            base = (
                ""
                if "listener" in self.extra_config
                else f"listener {self.port} 127.0.0.1\nallow_anonymous true\n"
            )
            persistence = (
                f"persistence true\npersistence_location {self.workdir}/\nautosave_interval 1\n"
                if self.persistent
                else "persistence false\n"
            )
            # Run as root, Mosquitto drops to user "mosquitto", which cannot write our work folder.
            user = "user root\n" if os.geteuid() == 0 and "user " not in self.extra_config else ""
            conf.write_text(
                base + user + persistence + self.extra_config.replace("{port}", str(self.port)) + "\n"
            )
            return [shutil.which("mosquitto") or "mosquitto", "-c", str(conf)]
        conf = self.workdir / "amqtt.yaml"
        conf.write_text(
            "listeners:\n  default:\n    type: tcp\n"
            f"    bind: 127.0.0.1:{self.port}\n"
            "plugins:\n  amqtt.plugins.authentication.AnonymousAuthPlugin:\n    allow_anonymous: true\n"
        )
        return [sys.executable, "-m", "amqtt.scripts.broker_script", "-c", str(conf)]

    def start(self, timeout_s: float = 10.0) -> BrokerProcess:
        log_path = self.workdir / f"{self.kind}.log"
        with open(log_path, "ab") as out:
            self.proc = subprocess.Popen(self._command(), stdout=out, stderr=subprocess.STDOUT)
        try:
            wait_for_port(self.port, timeout_s)
        except TimeoutError:
            self.stop()
            raise RuntimeError(f"{self.kind} did not start on port {self.port}; see {log_path}") from None
        log.info("%s broker listening on 127.0.0.1:%d", self.kind, self.port)
        return self

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def __enter__(self) -> BrokerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
