"""Real parts for telemetry tests: a persistent Mosquitto (also one run from the shipped
config), device profiles, an in-process device and ingester."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from edgecascade.cloud.ingest.ingester import Ingester, PersistentMqttConnection
from edgecascade.cloud.ingest.sqlite_store import SqliteStore
from edgecascade.cloud.ingest.store import TelemetryStore
from edgecascade.edge import telemetry as edge_telemetry
from edgecascade.edge.agent import Agent
from edgecascade.edge.config import load_profile
from edgecascade.edge.telemetry.uplink import TelemetryUplink
from edgecascade.shared.mqtt import MqttConnection, MqttSettings, Topics
from edgecascade.tools.mqtt_broker import BrokerProcess
from tests.conftest import MODELS, REPO

FLEET = "t"


def persistent_broker(workdir: Path) -> BrokerProcess:
    """Mosquitto that keeps sessions across a restart (saved on SIGTERM), like a production broker."""
    store = workdir / "mosquitto-db"
    store.mkdir(exist_ok=True)
    return BrokerProcess(workdir=workdir, extra_config=f"persistence true\npersistence_location {store}/\n")


def kill_9(broker: BrokerProcess) -> None:
    """SIGKILL the broker: no chance to save its in-memory state (PUBACKed messages included)."""
    assert broker.proc is not None
    broker.proc.kill()
    broker.proc.wait(10)
    broker.proc = None


def shipped_broker(workdir: Path, users: dict[str, str]) -> BrokerProcess:
    """Mosquitto run from firmware-configs/mosquitto/mosquitto.conf and its ACL (fleet "t"),
    with `users` in a real password file. Only the TLS listener is swapped for a plain loopback
    one, and the paths point into `workdir`."""
    configs = REPO / "firmware-configs" / "mosquitto"
    passwd = workdir / "passwd"
    passwd.write_text("".join(f"{u}:{p}\n" for u, p in users.items()))
    subprocess.run([shutil.which("mosquitto_passwd") or "mosquitto_passwd", "-U", str(passwd)], check=True)
    acl = workdir / "acl"
    acl.write_text((configs / "acl").read_text().replace("edgecascade/demo/", f"edgecascade/{FLEET}/"))
    store = workdir / "mosquitto-db"
    store.mkdir(exist_ok=True)
    lines = []
    for line in (configs / "mosquitto.conf").read_text().splitlines():
        key = line.split(" ", 1)[0]
        if key in ("cafile", "certfile", "keyfile", "tls_version"):
            continue
        line = {
            "listener": "listener {port} 127.0.0.1",
            "password_file": f"password_file {passwd}",
            "acl_file": f"acl_file {acl}",
            "persistence_location": f"persistence_location {store}/",
        }.get(key, line)
        lines.append(line)
    # As root, Mosquitto would drop to user `mosquitto`, which cannot write pytest's tmp dir.
    user = "user root\n" if os.geteuid() == 0 else ""
    return BrokerProcess(workdir=workdir, extra_config=user + "\n".join(lines) + "\n")


def write_profile(
    path: Path,
    *,
    device: str,
    port: int,
    mqtt: bool = True,
    protocol: int = 5,
    username: str | None = None,
    password: str | None = None,
    **telemetry: object,
) -> Path:
    """A device profile on the demo ONNX model; `telemetry` overrides [telemetry] keys."""
    settings = {
        "metrics_interval_s": 3600,
        "flush_interval_ms": 20,
        "ack_timeout_s": 1.0,
        "ack_timeout_max_s": 2.0,
        **telemetry,
    }
    lines = "\n".join(f"{k} = {_toml(v)}" for k, v in settings.items())
    path.write_text(
        f"""profile = "test"
device_id = "{device}"
fleet = "{FLEET}"
data_dir = "{path.parent / (device + "-data")}"
memory_budget_mb = 300

[model]
path = "{MODELS / "digits_edge_int8.onnx"}"

[mqtt]
enabled = {str(mqtt).lower()}
port = {port}
protocol = {protocol}
reconnect_max_s = 1.0
keepalive_s = 5
{f'username = "{username}"' if username else ""}
{f'password = "{password}"' if password else ""}

[telemetry]
{lines}
"""
    )
    return path


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"
    return repr(value)


def start_ingester(
    port: int,
    store_path: Path | TelemetryStore,
    client_id: str = "ingest-test",
    protocol: int = 5,
    group: str = "",
    username: str | None = None,
    password: str | None = None,
) -> tuple[Ingester, PersistentMqttConnection]:
    connection = PersistentMqttConnection(
        MqttSettings(
            port=port,
            client_id=client_id,
            reconnect_max_s=1.0,
            protocol=protocol,
            username=username,
            password=password,
        )
    )
    store = SqliteStore(store_path) if isinstance(store_path, Path) else store_path
    ingester = Ingester(connection, store, fleet=FLEET, group=group)
    ingester.start()
    assert connection.start(wait_s=5.0), "ingester could not connect"
    time.sleep(0.3)  # let the SUBACK come back before devices publish
    return ingester, connection


def wait_for(check: Callable[[], bool], timeout_s: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


class Device:
    """An in-process agent with telemetry wired as the daemon wires it."""

    def __init__(self, profile_path: Path) -> None:
        self.profile = load_profile(profile_path)
        self.agent = Agent.from_profile(self.profile)
        presence = Topics(FLEET).presence(self.profile.device_id)
        self.connection = MqttConnection(self.profile.mqtt.settings(self.profile.device_id, presence))
        self.parts = edge_telemetry.build(self.profile, self.connection)
        assert self.parts.recorder is not None and self.parts.buffer is not None
        self.recorder = self.parts.recorder
        self.buffer = self.parts.buffer
        #: The buffer's sequence before this device's first record (a new buffer starts at
        #: the time in microseconds, not at 0).
        self.start_seq = self.buffer.last_seq
        assert self.parts.sink is None or isinstance(self.parts.sink, TelemetryUplink)
        self.uplink = self.parts.sink
        self.agent.cascade.observers.append(self.parts.observer)
        for service in self.parts.services:
            service.start()

    def made(self, n: int) -> list[int]:
        """The sequence numbers of this device's first `n` records."""
        return list(range(self.start_seq + 1, self.start_seq + n + 1))

    def predict(self, features, n: int, start: int = 0) -> None:  # type: ignore[no-untyped-def]
        for i in range(start, start + n):
            self.agent.predict(features[i % len(features)], request_id=f"r{i}")

    def close(self) -> None:
        for service in reversed(self.parts.services):
            service.stop(2.0)
        self.connection.stop()
        self.agent.close()
        self.buffer.close()
