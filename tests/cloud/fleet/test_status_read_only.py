"""`fleet status` is a read-only query: it works without the signing key and writes nothing."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from edgecascade.cli import main
from edgecascade.shared.manifest import UpdateStatus
from edgecascade.shared.mqtt import MqttConnection, MqttSettings, Topics
from edgecascade.tools.mqtt_broker import BrokerProcess


def test_status_needs_no_signing_key(
    broker: BrokerProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    status = UpdateStatus(
        device="pi-7",
        profile="raspberry-pi-4",
        agent_version="0.1.0",
        model="digits-edge",
        active_version="1.0.0",
        state="idle",
        updated_at=time.time(),
    )
    device = MqttConnection(MqttSettings(port=broker.port, client_id="pi-7"))
    assert device.start(wait_s=5)
    try:
        topics = Topics("north")
        # One status per model the device serves; an older agent's single status is shown too.
        for model, version in (("digits-edge", "1.0.0"), ("door-detector", "2.1.0")):
            mine = status.model_copy(update={"model": model, "active_version": version})
            device.publish(topics.update_status("pi-7", model), mine.model_dump_json(), qos=1, retain=True)
        old = status.model_copy(update={"device": "pi-6", "active_version": "0.9.0"})
        device.publish(topics.legacy_update_status("pi-6"), old.model_dump_json(), qos=1, retain=True)
        time.sleep(0.3)
        monkeypatch.chdir(tmp_path)  # the default --state-dir var/fleet would be created here
        key = tmp_path / "no-such.key"
        monkeypatch.setenv("EDGECASCADE_FLEET__BROKER", f"127.0.0.1:{broker.port}")
        rc = main(["fleet", "status", "--fleet", "north", "--key", str(key), "--wait", "0.3"])
        out = capsys.readouterr().out.splitlines()
    finally:
        device.stop()
    assert rc == 0
    assert out[0].split()[:4] == ["DEVICE", "MODEL", "VERSION", "STATE"]
    assert [line.split()[:4] for line in out[1:]] == [
        ["pi-6", "digits-edge", "0.9.0", "idle"],
        ["pi-7", "digits-edge", "1.0.0", "idle"],
        ["pi-7", "door-detector", "2.1.0", "idle"],
    ]
    assert not key.exists() and not (tmp_path / "var").exists()


def test_push_still_needs_the_key(
    broker: BrokerProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = tmp_path / "m.onnx"
    model.write_bytes(b"x")
    rc = main(
        ["fleet", "push", str(model), "--target", "all", "--broker", f"127.0.0.1:{broker.port}",
         "--key", str(tmp_path / "absent.key"), "--state-dir", str(tmp_path / "state")]
    )  # fmt: skip
    assert rc == 1
    assert "signing key not found (run `edgecascade fleet keygen`)" in capsys.readouterr().err
