"""End-to-end delivery through a broker that crashes: Mosquitto run from the shipped config
and ACL (per-device users, the ingester's own identity), killed with SIGKILL, so whatever it
had PUBACKed but not saved is gone. A device deletes a record only on the ingester's stored
acknowledgement, so every record produced is stored exactly once anyway."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgecascade.cloud.ingest.sqlite_store import SqliteStore
from edgecascade.shared.mqtt import MqttConnection, MqttSettings, Topics
from edgecascade.shared.telemetry_ack import encode_ack
from edgecascade.tools.mqtt_broker import BrokerProcess
from tests.cloud.ingest.support import (
    FLEET,
    Device,
    kill_9,
    shipped_broker,
    start_ingester,
    wait_for,
    write_profile,
)

USERS = {"fleet-manager": "fm-pw", "ingest": "ingest-pw", "dev-a": "a-pw", "dev-b": "b-pw"}


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[BrokerProcess]:
    proc = shipped_broker(tmp_path, USERS).start()
    try:
        yield proc
    finally:
        proc.stop()


def _device(tmp_path: Path, broker: BrokerProcess, name: str, protocol: int, **telemetry: object) -> Device:
    profile = write_profile(
        tmp_path / f"{name}.toml",
        device=name,
        port=broker.port,
        protocol=protocol,
        username=name,
        password=USERS[name],
        **telemetry,
    )
    device = Device(profile)
    assert device.connection.start(wait_s=5.0), device.connection.refused_reason
    return device


def _ingester(broker: BrokerProcess, store_path: Path, protocol: int):  # type: ignore[no-untyped-def]
    return start_ingester(
        broker.port, store_path, protocol=protocol, username="ingest", password=USERS["ingest"]
    )


@pytest.mark.parametrize("protocol", [5, 4], ids=["mqtt5", "mqtt311"])
def test_broker_kill_9_while_the_ingester_is_away_loses_nothing(
    tmp_path, broker, digits_split, protocol
) -> None:  # type: ignore[no-untyped-def]
    """The issue's case: the broker has PUBACKed and queued batches for the absent ingester,
    then dies with SIGKILL before saving them. They are still on the device and are resent."""
    store_path = tmp_path / "cloud.sqlite3"
    ingester, ing_conn = _ingester(broker, store_path, protocol)
    device = _device(tmp_path, broker, "dev-a", protocol, uplink_batch=25)
    features = digits_split[1].features
    try:
        device.predict(features, 100)
        device.recorder.flush()
        wait_for(lambda: ingester.stored == 100 and device.buffer.depth == 0, what="the first 100")
        ingester.stop()
        ing_conn.stop()  # away; its persistent session keeps collecting
        device.predict(features, 300, start=100)
        device.recorder.flush()
        uplink = device.uplink
        assert uplink is not None
        # The window (8 x 25) went to the broker and was PUBACKed; the rest waits on the device.
        wait_for(lambda: uplink.sent_records >= 300, what="a window published to the broker")
        assert device.buffer.depth == 300  # nothing deleted on a PUBACK
        kill_9(broker)  # well inside autosave_interval: the queued batches are lost with it
        broker.start()
        ingester, ing_conn = _ingester(broker, store_path, protocol)
        wait_for(lambda: SqliteStore(store_path).count() == 400, timeout_s=40, what="all 400 stored")
        wait_for(lambda: device.buffer.depth == 0, what="the device to delete what was acknowledged")
        store = SqliteStore(store_path)
        assert store.seqs("dev-a") == device.made(400)  # none lost, none twice
        assert store.dead_letters() == [] and ingester.refused == 0
        assert uplink.resent_batches >= 1 and uplink.acked_records == 400
    finally:
        device.close()
        ingester.stop()
        ing_conn.stop()


@pytest.mark.parametrize("protocol", [5, 4], ids=["mqtt5", "mqtt311"])
def test_broker_kill_9_at_several_points_under_load(tmp_path, broker, digits_split, protocol) -> None:  # type: ignore[no-untyped-def]
    """Two devices answer continuously while the broker is SIGKILLed three times, with the
    ingester connected: every record of each is stored exactly once."""
    store_path = tmp_path / "cloud.sqlite3"
    ingester, ing_conn = _ingester(broker, store_path, protocol)
    devices = [_device(tmp_path, broker, name, protocol, uplink_batch=20) for name in ("dev-a", "dev-b")]
    features = digits_split[1].features
    per_device = 1200
    done = threading.Event()

    def produce(device: Device) -> None:
        for start in range(0, per_device, 40):
            device.predict(features, 40, start=start)
            device.recorder.flush()
            time.sleep(0.02)
        done.set()

    threads = [threading.Thread(target=produce, args=(d,)) for d in devices]
    try:
        for t in threads:
            t.start()
        for stored_at_least in (300, 900, 1500):
            wait_for(
                lambda n=stored_at_least: ingester.stored >= n, timeout_s=40, what=f"{stored_at_least} stored"
            )
            kill_9(broker)
            time.sleep(0.3)
            broker.start()
        for t in threads:
            t.join(60)
        total = 2 * per_device
        wait_for(lambda: SqliteStore(store_path).count() == total, timeout_s=60, what="every record stored")
        wait_for(lambda: all(d.buffer.depth == 0 for d in devices), what="both buffers empty")
        store = SqliteStore(store_path)
        for device in devices:
            assert store.seqs(device.profile.device_id) == device.made(per_device)
        assert store.dead_letters() == []
    finally:
        for device in devices:
            device.close()
        ingester.stop()
        ing_conn.stop()


def test_the_shipped_acl_lets_only_the_ingester_acknowledge(tmp_path, broker) -> None:  # type: ignore[no-untyped-def]
    """A device reads only its own acknowledgements and cannot forge any; the ingester writes them."""
    topics = Topics(FLEET)

    def connect(user: str) -> MqttConnection:
        conn = MqttConnection(
            MqttSettings(port=broker.port, client_id=user, username=user, password=USERS[user])
        )
        assert conn.start(wait_s=5), conn.refused_reason
        return conn

    got: dict[str, list[bytes]] = {"dev-a": [], "dev-b": []}
    a, b, ingest = connect("dev-a"), connect("dev-b"), connect("ingest")
    try:
        for name, conn in (("dev-a", a), ("dev-b", b)):
            conn.subscribe(topics.telemetry_ack(name), lambda m, n=name: got[n].append(bytes(m.payload)))
        spy: list[bytes] = []
        a.subscribe(topics.telemetry_ack("dev-b"), lambda m: spy.append(bytes(m.payload)))
        time.sleep(0.3)
        a.publish_and_wait(topics.telemetry_ack("dev-b"), encode_ack("dev-b", [1]), 2)  # forged
        a.publish_and_wait(topics.telemetry_ack("dev-a"), encode_ack("dev-a", [1]), 2)  # self-serving
        assert ingest.publish_and_wait(topics.telemetry_ack("dev-b"), encode_ack("dev-b", [7]), 2)
        wait_for(lambda: len(got["dev-b"]) == 1, what="the ingester's acknowledgement")
        time.sleep(0.3)
        assert got == {"dev-a": [], "dev-b": [encode_ack("dev-b", [7])]}
        assert spy == []  # dev-a cannot read dev-b's acknowledgements
    finally:
        for conn in (a, b, ingest):
            conn.stop()


def test_shipped_config_tunes_persistence_and_bounds() -> None:
    conf = (Path(__file__).parents[3] / "firmware-configs" / "mosquitto" / "mosquitto.conf").read_text()
    settings = dict(
        line.split(" ", 1) for line in conf.splitlines() if line and not line.startswith("#") and " " in line
    )
    assert settings["persistence"] == "true" and int(settings["autosave_interval"]) <= 60
    assert int(settings["max_queued_messages"]) > 0 and int(settings["max_queued_bytes"]) > 0
    assert int(settings["max_packet_size"]) >= 2 * 1024 * 1024  # a 1 MiB batch and artifact chunks fit
