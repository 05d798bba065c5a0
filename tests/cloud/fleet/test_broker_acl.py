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
        d1.publish_and_wait(topics.manifest_all("m"), b"evil", 2, retain=True)
        d1.publish_and_wait(topics.update_status("d2", "m"), b"forged", 2, retain=True)
        d1.publish_and_wait(topics.update_status("d1", "m"), b"mine", 2, retain=True)
        time.sleep(0.2)
        assert _collect(fleet, topics.manifest_all("m")) == []
        assert _collect(fleet, topics.update_status("d2", "m")) == []
        assert _collect(fleet, topics.update_status("d1", "m")) == [b"mine"]

        assert fleet.publish_and_wait(topics.manifest_all("m"), b"signed", 2, retain=True)
        assert fleet.publish_and_wait(topics.manifest_device("m", "d2"), b"for-d2", 2, retain=True)
        assert fleet.publish_and_wait(topics.manifest_device("m", "d1"), b"for-d1", 2, retain=True)
        assert _collect(d1, topics.manifest_all("m")) == [b"signed"]
        assert _collect(d1, topics.manifest_device("m", "d1")) == [b"for-d1"]
        assert _collect(d1, topics.manifest_device("m", "d2")) == []  # not its topic

        wrong = MqttConnection(
            MqttSettings(port=acl_broker.port, client_id="x", username="d1", password="no")
        )
        assert not wrong.start(wait_s=1.0)
        wrong.stop()
    finally:
        fleet.stop()
        d1.stop()


DEVICE, APP, OTHER = "store-pc-0001", "app-store-pc-0001", "app-other"


@pytest.fixture
def shipped_acl_broker(tmp_path: Path):  # type: ignore[no-untyped-def]
    """Mosquitto with the shipped ACL (fleet renamed to t) and a password file made here for the
    identities the shipped files name, plus one application the ACL grants nothing."""
    if not shutil.which("mosquitto_passwd"):
        pytest.skip("mosquitto_passwd not installed")
    passwd = tmp_path / "passwd"
    passwd.write_text(f"fleet-manager:fleet-pw\n{DEVICE}:dev-pw\n{APP}:app-pw\n{OTHER}:other-pw\n")
    subprocess.run(["mosquitto_passwd", "-U", str(passwd)], check=True)
    acl = tmp_path / "acl"
    acl.write_text((CONFIGS / "acl").read_text().replace("edgecascade/demo/", "edgecascade/t/"))
    user = "user root\n" if os.geteuid() == 0 else ""
    extra = user + (
        f"listener {{port}} 127.0.0.1\nallow_anonymous false\npassword_file {passwd}\nacl_file {acl}\n"
        "log_type all\n"
    )
    proc = BrokerProcess(extra_config=extra, workdir=tmp_path).start()
    yield proc
    proc.stop()


def _app(port: int, user: str, password: str, protocol: int) -> tuple[mqtt.Client, list[mqtt.MQTTMessage]]:
    from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

    version = MQTTProtocolVersion.MQTTv5 if protocol == 5 else MQTTProtocolVersion.MQTTv311
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{user}-{protocol}", protocol=version)
    client.username_pw_set(user, password)
    got: list[mqtt.MQTTMessage] = []
    client.on_message = lambda c, u, m: got.append(m)
    client.connect("127.0.0.1", port)
    client.loop_start()
    return client, got


def test_an_application_asks_its_device_and_reads_the_answer_under_the_shipped_acl(
    shipped_acl_broker: BrokerProcess, tmp_path: Path, digits_split
) -> None:  # type: ignore[no-untyped-def]
    """Before: the device's reply to `app/replies/1` was denied and only the fleet identity could
    ask. Now the application identity asks on <device>/requests/<app> and reads <device>/replies/<app>."""
    import json

    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    from edgecascade.tools.mqtt_broker import free_port
    from tests.edge.daemon.support import DaemonProcess, write_profile

    _, held = digits_split
    topics = Topics("t")
    api_port = free_port()
    creds = f'username = "{DEVICE}"\npassword = "dev-pw"\n'
    profile = write_profile(
        tmp_path, device=DEVICE, broker_port=shipped_acl_broker.port, api_port=api_port, extra=creds
    )
    daemon = DaemonProcess(profile, api_port, tmp_path / "daemon.log").start()
    clients = []
    try:
        other, stolen = _app(shipped_acl_broker.port, OTHER, "other-pw", 5)
        clients.append(other)
        other.subscribe(topics.reply_to(DEVICE, APP) + "/#", qos=1)  # someone else's answers
        other.subscribe(topics.reply_to(DEVICE, OTHER), qos=1)
        for protocol in (5, 4):
            app, got = _app(shipped_acl_broker.port, APP, "app-pw", protocol)
            clients.append(app)
            reply_to = topics.reply_to(DEVICE, APP) + f"/v{protocol}"
            app.subscribe(reply_to, qos=1)
            time.sleep(0.3)
            for i in range(3):
                params: dict[str, object] = {}
                props = None
                if protocol == 5:
                    props = Properties(PacketTypes.PUBLISH)
                    props.ResponseTopic = reply_to
                    props.CorrelationData = f"c{i}".encode()
                else:
                    params = {"reply_to": reply_to, "correlation_id": f"c{i}"}
                row = held.features[i].tolist()
                body = {"id": f"r{i}", "parameters": params, "inputs": [_tensor(row)]}
                app.publish(topics.request_from(DEVICE, APP), json.dumps(body), qos=1, properties=props)
            deadline = time.monotonic() + 15
            while len(got) < 3 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert len(got) == 3, f"MQTT {protocol}: {len(got)} replies"
            for msg in got:
                answer = json.loads(msg.payload)
                i = int(answer["id"][1:])
                label = next(o for o in answer["outputs"] if o["name"] == "label")["data"][0]
                assert int(label) == int(held.labels[i]) and answer["parameters"]["correlation_id"] == f"c{i}"

        # An application the ACL grants nothing cannot ask; it never read anyone's answers.
        other.publish(
            topics.request_from(DEVICE, OTHER),
            json.dumps(
                {
                    "id": "x",
                    "parameters": {"reply_to": topics.reply_to(DEVICE, OTHER)},
                    "inputs": [_tensor(held.features[0].tolist())],
                }
            ),
            qos=1,
        )
        time.sleep(1.5)
        assert stolen == []
        log = (tmp_path / "mosquitto.log").read_text()
        assert f"Denied PUBLISH from {DEVICE}" not in log
        assert f"Denied PUBLISH from {OTHER}-5" in log
    finally:
        for client in clients:
            client.loop_stop()
            client.disconnect()
        daemon.stop()


def _tensor(row: list[float]) -> dict[str, object]:
    return {"name": "input", "datatype": "FP32", "shape": [1, 64], "data": row}
