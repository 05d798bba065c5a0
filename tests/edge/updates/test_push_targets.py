"""Several in-thread devices and a fleet manager on one real Mosquitto: who gets what, and why not."""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edgecascade.cloud.fleet.manifest_builder import build_manifest
from edgecascade.edge.updates import active_model_path
from edgecascade.tools.mqtt_broker import BrokerProcess
from tests.edge.updates.helpers import FLEET, Device, make_profile, start_fleet, wait_until


def _devices(tmp_path: Path, port: int, key: Ed25519PrivateKey) -> list[Device]:
    specs = [("d1", ["g1"]), ("d2", ["g1"]), ("d3", ["g2"])]
    return [Device.start(make_profile(tmp_path, d, port, key.public_key(), groups=g)) for d, g in specs]


def test_push_to_one_then_group_then_all(
    broker: BrokerProcess, tmp_path: Path, signing_key: Ed25519PrivateKey, model_v2: Path, model_v3: Path
) -> None:
    devices = _devices(tmp_path, broker.port, signing_key)
    fleet = start_fleet(broker.port, signing_key, tmp_path / "fleet")
    try:
        wait_until(lambda: len(fleet.board.statuses()) == 3, what="3 device statuses")
        versions = lambda: [d.version for d in devices]  # noqa: E731

        manifest, payloads = build_manifest(model_v2, fleet=FLEET, target="device:d1", chunk_size=2048)
        signed, sent = fleet.push(manifest, payloads)
        assert sent == ["d1"]
        done = fleet.board.wait_for(signed.push_id, sent, 30)
        assert done["d1"] is not None and done["d1"].state == "active"
        assert versions() == ["1.1.0", "1.0.0", "1.0.0"]

        manifest, payloads = build_manifest(model_v2, fleet=FLEET, target="group:g1", chunk_size=2048)
        signed, sent = fleet.push(manifest, payloads)
        assert sent == ["d1", "d2"]
        fleet.board.wait_for(signed.push_id, ["d2"], 30)
        assert versions() == ["1.1.0", "1.1.0", "1.0.0"]

        manifest, payloads = build_manifest(model_v3, fleet=FLEET, target="all", chunk_size=2048)
        signed, sent = fleet.push(manifest, payloads)
        assert sent == ["d1", "d2", "d3"]
        # The newest signed instruction wins over d1's device-level and d2's group-level ones.
        done = fleet.board.wait_for(signed.push_id, sent, 30)
        assert {d: (st.state if st else None) for d, st in done.items()} == dict.fromkeys(sent, "active")
        assert versions() == ["1.2.0", "1.2.0", "1.2.0"]
        # The pointer survives: a restart loads the updated model.
        assert active_model_path(devices[2].profile).parent.name == "1.2.0"
    finally:
        for d in devices:
            d.stop()
        fleet.connection.stop()


def test_tampered_chunk_and_wrong_signature_are_refused(
    broker: BrokerProcess, tmp_path: Path, signing_key: Ed25519PrivateKey, model_v2: Path
) -> None:
    device = Device.start(make_profile(tmp_path, "d1", broker.port, signing_key.public_key()))
    fleet = start_fleet(broker.port, signing_key, tmp_path / "fleet")
    try:
        wait_until(lambda: "d1" in fleet.board.statuses(), what="device status")
        # Signed by another key: refused before any download, counted, the state kept.
        rogue = start_fleet(broker.port, Ed25519PrivateKey.generate(), tmp_path / "rogue")
        manifest, payloads = build_manifest(model_v2, fleet=FLEET, target="device:d1", chunk_size=2048)
        rogue.push(manifest, payloads)
        wait_until(lambda: fleet.board.statuses()["d1"].refused_manifests == 1, what="refusal counted")
        st = fleet.board.statuses()["d1"]
        assert (st.state, st.push_id) == ("active", None) and "bad signature" in (st.last_refusal or "")
        assert device.version == "1.0.0"
        rogue.connection.stop()

        # Correctly signed, but one chunk replaced on the broker by someone without the key.
        manifest, payloads = build_manifest(model_v2, fleet=FLEET, target="device:d1", chunk_size=2048)
        fleet.publish_payloads(payloads)
        blob = payloads[0].blob
        start, end = blob.chunk_bounds(1)
        evil = bytearray(payloads[0].data[start:end])
        evil[10] ^= 0xFF
        assert fleet.connection.publish_and_wait(f"{blob.topic}/1", bytes(evil), 5, retain=True)
        signed, _ = fleet.push(manifest, [])
        st = fleet.board.wait_for(signed.push_id, ["d1"], 20)["d1"]
        assert st is not None and st.state == "failed", st
        assert "tampered" in (st.reason or "")
        assert device.version == "1.0.0"

        # Unsigned manifests are refused too, and do not touch the state (the tampered push's).
        manifest, payloads = build_manifest(model_v2, fleet=FLEET, target="device:d1", chunk_size=2048)
        fleet.publish_payloads(payloads)
        assert fleet.connection.publish_and_wait(
            fleet.topics.manifest_device("digits-edge", "d1"), manifest.model_dump_json(), 5, retain=True
        )
        wait_until(lambda: fleet.board.statuses()["d1"].refused_manifests == 2, what="unsigned refusal")
        st = fleet.board.statuses()["d1"]
        assert (st.state, st.push_id) == ("failed", signed.push_id) and "tampered" in (st.reason or "")
        assert st.last_refusal == "unsigned manifest"
        assert device.version == "1.0.0"
    finally:
        device.stop()
        fleet.connection.stop()


def test_newer_agent_and_other_profile_are_refused_with_reason(
    broker: BrokerProcess, tmp_path: Path, signing_key: Ed25519PrivateKey, model_v2: Path
) -> None:
    device = Device.start(make_profile(tmp_path, "d1", broker.port, signing_key.public_key()))
    fleet = start_fleet(broker.port, signing_key, tmp_path / "fleet")
    try:
        wait_until(lambda: "d1" in fleet.board.statuses(), what="device status")
        manifest, payloads = build_manifest(
            model_v2, fleet=FLEET, target="device:d1", min_agent_version="99.0.0"
        )
        signed, _ = fleet.push(manifest, payloads)
        st = fleet.board.wait_for(signed.push_id, ["d1"], 20)["d1"]
        assert st is not None and st.state == "failed"
        assert "needs agent >= 99.0.0" in (st.reason or "")

        manifest, payloads = build_manifest(
            model_v2, fleet=FLEET, target="device:d1", profiles=["raspberry-pi-4"]
        )
        signed, _ = fleet.push(manifest, payloads)
        st = fleet.board.wait_for(signed.push_id, ["d1"], 20)["d1"]
        assert st is not None and st.state == "failed" and "incompatible profile" in (st.reason or "")
        assert device.version == "1.0.0"
    finally:
        device.stop()
        fleet.connection.stop()
