"""Real parts for update tests: device profiles on disk, in-thread devices with their own MQTT
connection and model slot, a fleet manager with a real key, and a fine-tuned model variant."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgecascade.cloud.fleet.manager import FleetManager
from edgecascade.edge.config.profile import DeviceProfile
from edgecascade.edge.local_model import LocalModel, backend_options
from edgecascade.edge.model_slot import ModelSlot
from edgecascade.edge.updates import active_model_path, build, health_monitor
from edgecascade.edge.updates.updater import ModelUpdater
from edgecascade.shared.manifest import public_key_b64
from edgecascade.shared.model_card import ModelCard
from edgecascade.shared.mqtt import MqttConnection, MqttSettings, Topics

MODELS = Path(__file__).parents[2] / "fixtures" / "models"
FLEET = "t"


def wait_until(pred: Callable[[], object], timeout_s: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


def copy_model(src: Path, dst_dir: Path, name: str | None = None) -> Path:
    dst_dir.mkdir(parents=True, exist_ok=True)
    dst = dst_dir / (name or src.name)
    shutil.copyfile(src, dst)
    shutil.copyfile(ModelCard.path_for(src), ModelCard.path_for(dst))
    return dst


def fine_tuned(src: Path, dst: Path, version: str, scale: float = 0.01, seed: int = 0) -> Path:
    """A 'fine-tuned' variant of an fp32 ONNX MLP: weights nudged by a small relative noise;
    small enough to keep the answers, real enough that the bytes differ everywhere weights live."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(src))
    rng = np.random.default_rng(seed)
    for init in model.graph.initializer:
        arr = numpy_helper.to_array(init)
        if arr.dtype == np.float32 and arr.size > 1:
            arr = arr * (1.0 + scale * rng.standard_normal(arr.shape).astype(np.float32))
            init.CopyFrom(numpy_helper.from_array(arr.astype(np.float32), init.name))
    dst.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(dst))
    card = ModelCard.load_for(src).model_copy(update={"version": version, "file": dst.name})
    card.save_beside(dst)
    return dst


def make_profile(
    root: Path,
    device_id: str,
    port: int,
    public_key: Any,
    *,
    groups: list[str] | None = None,
    factory: Path | None = None,
    profile_name: str = "x86-store-pc",
    updates: dict[str, Any] | None = None,
    mqtt: dict[str, Any] | None = None,
) -> DeviceProfile:
    home = root / device_id
    factory = factory or copy_model(MODELS / "digits_edge_fp32.onnx", home / "factory")
    cfg = {
        "enabled": True,
        "public_key": public_key_b64(public_key),
        "stall_timeout_s": 1.0,
        "download_timeout_s": 30.0,
        "check_timeout_s": 20.0,
        "watch_window_s": 0.0,
        **(updates or {}),
    }
    return DeviceProfile.model_validate(
        {
            "profile": profile_name,
            "device_id": device_id,
            "fleet": FLEET,
            "groups": groups or [],
            "data_dir": str(home / "data"),
            "memory_budget_mb": 300,
            "runtime": {"warmup_runs": 0},
            "model": {"name": "digits-edge", "path": str(factory)},
            "mqtt": {"enabled": True, "port": port, **(mqtt or {})},
            "updates": cfg,
        }
    )


@dataclass
class Device:
    """An in-thread device: its own MQTT connection, model slot and updater."""

    profile: DeviceProfile
    connection: MqttConnection
    slot: ModelSlot
    updater: ModelUpdater

    @classmethod
    def start(cls, profile: DeviceProfile) -> Device:
        slot = ModelSlot(LocalModel.load(active_model_path(profile), backend_options(profile)))
        presence = Topics(profile.fleet).presence(profile.device_id)
        settings = profile.mqtt.settings(profile.device_id, presence)
        settings.reconnect_min_s = 0.2
        settings.reconnect_max_s = 1.0
        connection = MqttConnection(settings)
        health = health_monitor(profile)
        slot.observers.append(health.observe_run)  # as the daemon does: every call of this model
        updater = build(profile, connection, slot, health=health)
        updater.start()
        connection.start(wait_s=5)
        return cls(profile, connection, slot, updater)

    @property
    def version(self) -> str:
        return self.slot.current.card.version

    def stop(self) -> None:
        self.updater.stop(5)
        self.connection.stop()
        self.slot.close()


def fleet_connection(port: int, **kw: Any) -> MqttConnection:
    conn = MqttConnection(
        MqttSettings(port=port, client_id="fleet-test", reconnect_min_s=0.2, reconnect_max_s=1.0, **kw)
    )
    return conn


def start_fleet(port: int, key: Any, state_dir: Path, **kw: Any) -> FleetManager:
    conn = fleet_connection(port, **kw)
    manager = FleetManager(conn, FLEET, key, state_dir)
    assert conn.start(wait_s=5), "fleet manager could not connect"
    return manager
