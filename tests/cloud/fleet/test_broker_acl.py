"""firmware-configs/mosquitto/acl on a real Mosquitto with per-device passwords: a device writes
only its own status and reads only its model topics; only the fleet identity publishes manifests."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from edgecascade.shared.mqtt import MqttConnection, MqttSettings, Topics
from edgecascade.tools.mqtt_broker import BrokerProcess

CONFIGS = Path(__file__).parents[3] / "firmware-configs" / "mosquitto"


@pytest.fixture
def acl_broker(tmp_path: Path):  # type: ignore[no-untyped-def]
    if not shutil.which("mosquitto_passwd"):
        pytest.skip("mosquitto_passwd not installed")
    passwd = tmp_path / "passwd"
    passwd.write_text("fleet-manager:fleet-pw\nd1:d1-pw\nd2:d2-pw\n")
    subprocess.run(["mosquitto_passwd", "-U", str(passwd)], check=True)
    acl = tmp_path / "acl"
    acl.write_text((CONFIGS / "acl").read_text().replace("edgecascade/demo/", "edgecascade/t/"))
    # As root, Mosquitto would drop to user `mosquitto`, which cannot read pytest's 0700 tmp dir.
    user = "user root\n" if os.geteuid() == 0 else ""
    extra = (
        user + f"listener {{port}} 127.0.0.1\nallow_anonymous false\npassword_file {passwd}\nacl_file {acl}\n"
    )
    proc = BrokerProcess(extra_config=extra, workdir=tmp_path).start()
    yield proc
    proc.stop()


def _connect(port: int, user: str, password: str) -> MqttConnection:
    conn = MqttConnection(MqttSettings(port=port, client_id=user, username=user, password=password))
    assert conn.start(wait_s=5), conn.refused_reason
    return conn


def _collect(conn: MqttConnection, topic: str) -> list[bytes]:
    got: list[bytes] = []
    done = threading.Event()

    def on(msg: mqtt.MQTTMessage) -> None:
        got.append(bytes(msg.payload))
        done.set()

    conn.subscribe(topic, on)
    done.wait(1.0)
    return got


def test_acl_limits_devices_to_their_topics(acl_broker: BrokerProcess) -> None:
    topics = Topics("t")
    fleet = _connect(acl_broker.port, "fleet-manager", "fleet-pw")
    d1 = _connect(acl_broker.port, "d1", "d1-pw")
    try:
        # A device cannot publish manifests (the broker drops it), the fleet can.
        d1.publish_and_wait(topics.manifest_all(), b"evil", 2, retain=True)
        d1.publish_and_wait(topics.update_status("d2"), b"forged", 2, retain=True)
        d1.publish_and_wait(topics.update_status("d1"), b"mine", 2, retain=True)
        time.sleep(0.2)
        assert _collect(fleet, topics.manifest_all()) == []
        assert _collect(fleet, topics.update_status("d2")) == []
        assert _collect(fleet, topics.update_status("d1")) == [b"mine"]

        assert fleet.publish_and_wait(topics.manifest_all(), b"signed", 2, retain=True)
        assert fleet.publish_and_wait(topics.manifest_device("d2"), b"for-d2", 2, retain=True)
        assert fleet.publish_and_wait(topics.manifest_device("d1"), b"for-d1", 2, retain=True)
        assert _collect(d1, topics.manifest_all()) == [b"signed"]
        assert _collect(d1, topics.manifest_device("d1")) == [b"for-d1"]
        assert _collect(d1, topics.manifest_device("d2")) == []  # not its topic

        wrong = MqttConnection(
            MqttSettings(port=acl_broker.port, client_id="x", username="d1", password="no")
        )
        assert not wrong.start(wait_s=1.0)
        wrong.stop()
    finally:
        fleet.stop()
        d1.stop()
