"""Real parts for deferred-escalation tests: device profiles, a real paho subscriber that
counts verdict events, the real cloud API's Prometheus counters, and the digits the edge
model finds hard."""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt
import requests
from paho.mqtt.enums import CallbackAPIVersion

from tests.conftest import MODELS

FLEET = "t"
HARD_THRESHOLD = 0.68  # the profile's max_prob policy: below it a case is hard


def write_profile(
    path: Path,
    *,
    device: str,
    cloud_url: str,
    mqtt_port: int | None,
    deferred: dict[str, object] | None = None,
    cascade: dict[str, object] | None = None,
) -> Path:
    """A device profile on the int8 TFLite demo model, a fast-failing cloud client and
    [deferred] overrides; `mqtt_port=None` switches MQTT off."""
    section = {"rate_per_s": 100.0, "retry_interval_s": 0.1, "flush_interval_ms": 10, **(deferred or {})}
    cascade_lines = "\n".join(f"{k} = {_toml(v)}" for k, v in (cascade or {}).items())
    path.write_text(
        f"""profile = "test"
device_id = "{device}"
fleet = "{FLEET}"
data_dir = "{path.parent / (device + "-data")}"
memory_budget_mb = 300

[model]
path = "{MODELS / "digits_edge_int8.tflite"}"

[cascade]
policies = [{{ kind = "max_prob", threshold = {HARD_THRESHOLD} }}]
{cascade_lines}

[cloud]
url = "{cloud_url}"
deadline_s = 0.5
read_timeout_s = 0.4
connect_timeout_s = 0.2
retries = 0
breaker_failures = 2
breaker_reset_s = 0.3

[mqtt]
enabled = {str(mqtt_port is not None).lower()}
port = {mqtt_port or 1}
reconnect_max_s = 1.0
keepalive_s = 5

[telemetry]
flush_interval_ms = 10
metrics_interval_s = 3600

[deferred]
{chr(10).join(f"{k} = {_toml(v)}" for k, v in section.items())}
"""
    )
    return path


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return json.dumps(value)
    return repr(value)


def edge_confidence(features: np.ndarray) -> np.ndarray:
    """The edge model's top probability per row."""
    from edgecascade.edge.local_model import LocalModel
    from edgecascade.shared.backends import BackendOptions

    model = LocalModel.load(MODELS / "digits_edge_int8.tflite", BackendOptions())
    try:
        return model.probabilities(features).max(axis=1)
    finally:
        model.close()


def hard_rows(features: np.ndarray, n: int) -> list[int]:
    """Indices of the first `n` held-out digits the edge model is unsure about."""
    rows = [int(i) for i in np.flatnonzero(edge_confidence(features) < HARD_THRESHOLD)[:n]]
    assert len(rows) == n, f"only {len(rows)} hard digits in the held-out split"
    return rows


class VerdictSubscriber:
    """A real MQTT client subscribed (QoS 1) to a device's verdicts topic; counts every message."""

    def __init__(self, port: int, topic: str) -> None:
        self.topic = topic
        self.messages: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"verdict-sub-{port}")
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *args: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self._subscribed.wait(5.0), "subscriber could not subscribe"

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        client.subscribe(self.topic, qos=1)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append(json.loads(msg.payload))

    def counts(self) -> Counter[str]:
        with self._lock:
            return Counter(m["request_id"] for m in self.messages)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def cloud_counter(url: str, name: str, model: str = "digits-cloud") -> float:
    """A counter from the real cloud API's /metrics, e.g. edgecascade_cloud_inferences."""
    text = requests.get(url + "/metrics", timeout=2.0).text
    match = re.search(rf'^{name}_total{{model="{model}"}} ([0-9.e+]+)$', text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def wait_for(check: Callable[[], bool], timeout_s: float = 15.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


class Device:
    """What the daemon will wire: an Agent (real model, cloud client, answer cache), real
    telemetry (buffer, recorder), the deferred parts and, with MQTT on, one shared connection.
    `worker_cloud` replaces the cloud client the late-verdict worker uses (default: the cascade's)."""

    def __init__(self, profile_path: str | Path, worker_cloud: Any = None) -> None:
        from edgecascade.edge import deferred as edge_deferred
        from edgecascade.edge import telemetry as edge_telemetry
        from edgecascade.edge.agent import Agent
        from edgecascade.edge.config import load_profile
        from edgecascade.shared.mqtt import MqttConnection, Topics

        self.profile = load_profile(profile_path)
        self.agent = Agent.from_profile(self.profile)
        self.connection = None
        if self.profile.mqtt.enabled:
            presence = Topics(self.profile.fleet).presence(self.profile.device_id)
            self.connection = MqttConnection(self.profile.mqtt.settings(self.profile.device_id, presence))
        self.telemetry = edge_telemetry.build(self.profile, None)
        assert self.agent.lookups is not None
        self.deferred = edge_deferred.build(
            self.profile,
            worker_cloud or self.agent.cascade.cloud,
            self.connection,
            self.telemetry.recorder,
            self.agent.lookups.cache,
            labels=lambda: self.agent.model.card.labels,
        )
        self.agent.cascade.observers.append(self.telemetry.observer)
        self.agent.cascade.observers.append(self.deferred.observer)
        self.services = [*self.telemetry.services, *self.deferred.services]

    def start(self) -> Device:
        for service in self.services:
            service.start()
        if self.connection is not None:
            self.connection.start(wait_s=5.0)
        return self

    def stop(self) -> None:
        for service in reversed(self.services):
            service.stop(2.0)
        if self.connection is not None:
            self.connection.stop()
        self.deferred.close()
        if self.telemetry.buffer is not None:
            self.telemetry.buffer.close()
        self.agent.close()


class SwitchableCloud:
    """The real cloud API behind a real TCP proxy: `down()` resets every connection (the cloud
    is unreachable), `up()` forwards again. The server keeps running, so its port is never
    re-bound and its counters (/metrics) cover the whole test."""

    def __init__(self, repository: Path, log_path: Path) -> None:
        from tests.support.cloud_server import CloudServer
        from tests.support.faulty_proxy import FaultyProxy

        self.server = CloudServer(repository, log_path=log_path).start()
        self.proxy = FaultyProxy(self.server.port, mode="reset").start()

    @property
    def url(self) -> str:
        """Where the device sends its requests (the proxy)."""
        return self.proxy.url

    def down(self) -> None:
        self.proxy.set_mode("reset")

    def up(self) -> None:
        self.proxy.set_mode("pass")

    def counter(self, name: str) -> float:
        return cloud_counter(self.server.url, name)

    def close(self) -> None:
        self.proxy.stop()
        self.server.stop()


class RecordingCloud:
    """A real cloud client that also notes when each call starts (monotonic seconds) and for
    which request: the worker's send schedule, seen from outside."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls: list[tuple[float, str]] = []

    def infer(self, features: np.ndarray, *, request_id: str, raw_input: bytes | None = None) -> Any:
        self.calls.append((time.monotonic(), request_id))
        return self.inner.infer(features, request_id=request_id, raw_input=raw_input)

    def close(self) -> None:
        self.inner.close()
