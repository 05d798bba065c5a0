"""Real parts for telemetry tests: a persistent Mosquitto, device profiles, an in-process ingester."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from edgecascade.cloud.ingest.ingester import Ingester, PersistentMqttConnection
from edgecascade.cloud.ingest.sqlite_store import SqliteStore
from edgecascade.shared.mqtt import MqttSettings
from edgecascade.tools.mqtt_broker import BrokerProcess
from tests.conftest import MODELS

FLEET = "t"


def persistent_broker(workdir: Path) -> BrokerProcess:
    """Mosquitto that keeps sessions across a restart (saved on SIGTERM), like a production broker."""
    store = workdir / "mosquitto-db"
    store.mkdir(exist_ok=True)
    return BrokerProcess(workdir=workdir, extra_config=f"persistence true\npersistence_location {store}/\n")


def write_profile(
    path: Path, *, device: str, port: int, mqtt: bool = True, protocol: int = 5, **telemetry: object
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
    port: int, store_path: Path, client_id: str = "ingest-test", protocol: int = 5, group: str = ""
) -> tuple[Ingester, PersistentMqttConnection]:
    connection = PersistentMqttConnection(
        MqttSettings(port=port, client_id=client_id, reconnect_max_s=1.0, protocol=protocol)
    )
    ingester = Ingester(connection, SqliteStore(store_path), fleet=FLEET, group=group)
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
