"""Manifests tried as an attacker who can write manifest topics would (real Mosquitto, real
devices, real signatures): replays to another device, replays of older pushes, downgrades, and
garbage. None may change what a device serves or what its retained status says."""

from __future__ import annotations

import json
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edgecascade.cloud.fleet.manager import FleetManager
from edgecascade.cloud.fleet.manifest_builder import build_manifest
from edgecascade.shared.manifest import MAX_MANIFEST_BYTES, Manifest, UpdateStatus
from edgecascade.tools.mqtt_broker import BrokerProcess
from tests.edge.updates.helpers import FLEET, Device, make_profile, start_fleet, wait_until


def _push(fleet: FleetManager, model: Path, target: str, devices: list[str]) -> Manifest:
    manifest, payloads = build_manifest(model, fleet=FLEET, target=target, chunk_size=4096)
    signed, _ = fleet.push(manifest, payloads)
    done = fleet.board.wait_for(signed.push_id, devices, 30)
    assert all(st is not None and st.state == "active" for st in done.values()), done
    assert isinstance(signed, Manifest)
    return signed


def _refusals(fleet: FleetManager, device: str, count: int) -> UpdateStatus:
    wait_until(lambda: fleet.board.statuses()[device].refused_manifests == count, what=f"{count} refusals")
    return fleet.board.statuses()[device]


def test_replays_to_another_device_and_of_older_pushes_are_refused(
    broker: BrokerProcess, tmp_path: Path, signing_key: Ed25519PrivateKey, model_v2: Path, model_v3: Path
) -> None:
    a = Device.start(make_profile(tmp_path, "a", broker.port, signing_key.public_key(), groups=["ga"]))
    b = Device.start(make_profile(tmp_path, "b", broker.port, signing_key.public_key(), groups=["gb"]))
    fleet = start_fleet(broker.port, signing_key, tmp_path / "fleet")
    try:
        wait_until(lambda: len(fleet.board.statuses()) == 2, what="2 statuses")
        older_b = _push(fleet, model_v2, "device:b", ["b"])  # b: 1.1.0
        newer_b = _push(fleet, model_v3, "device:b", ["b"])  # b: 1.2.0
        for_a = _push(fleet, model_v2, "device:a", ["a"])  # a: 1.1.0, signed for device:a
        assert (a.version, b.version) == ("1.1.0", "1.2.0")
        kept = fleet.board.statuses()["b"]
        assert (kept.state, kept.push_id) == ("active", newer_b.push_id)

        # A's manifest, republished on B's topics: its signed target does not cover B.
        body = for_a.model_dump_json().encode()
        for topic in (
            fleet.topics.manifest_device("digits-edge", "b"),
            fleet.topics.manifest_group("digits-edge", "gb"),
        ):
            assert fleet.connection.publish_and_wait(topic, body, 5, retain=True)
        st = _refusals(fleet, "b", 2)
        assert "signed for device:a, which does not cover device b" in (st.last_refusal or "")
        # B's own older push replayed on its device topic and on the fleet-wide one.
        replay = older_b.model_dump_json().encode()
        for topic in (
            fleet.topics.manifest_device("digits-edge", "b"),
            fleet.topics.manifest_all("digits-edge"),
        ):
            assert fleet.connection.publish_and_wait(topic, replay, 5, retain=True)
        st = _refusals(fleet, "b", 4)
        assert f"push {older_b.push_id} was issued before push {newer_b.push_id}" in (st.last_refusal or "")
        assert b.version == "1.2.0" and b.updater.refusals.count == 4
        assert (st.state, st.push_id, st.active_version) == ("active", newer_b.push_id, "1.2.0")
        assert a.updater.refusals.count == 1 and a.version == "1.1.0"  # the all-level replay: signed for b

        # After a restart the retained replays arrive again: refused again, nothing applied.
        b.stop()
        b = Device.start(b.profile)
        wait_until(lambda: b.updater.refusals.count == 3, what="replays refused after the restart")
        time.sleep(0.5)
        assert b.version == "1.2.0" and b.updater.status.state == "active"
    finally:
        a.stop()
        b.stop()
        fleet.connection.stop()


def test_a_fresh_push_of_an_older_version_fails_unless_it_is_a_rollback(
    broker: BrokerProcess, tmp_path: Path, signing_key: Ed25519PrivateKey, model_v2: Path, model_v3: Path
) -> None:
    d = Device.start(make_profile(tmp_path, "d", broker.port, signing_key.public_key()))
    fleet = start_fleet(broker.port, signing_key, tmp_path / "fleet")
    try:
        wait_until(lambda: "d" in fleet.board.statuses(), what="status")
        _push(fleet, model_v2, "device:d", ["d"])
        _push(fleet, model_v3, "device:d", ["d"])
        manifest, payloads = build_manifest(model_v2, fleet=FLEET, target="device:d", chunk_size=4096)
        signed, _ = fleet.push(manifest, payloads)  # newest signed, but 1.1.0 < 1.2.0
        st = fleet.board.wait_for(signed.push_id, ["d"], 20)["d"]
        assert st is not None and st.state == "failed" and st.active_version == "1.2.0"
        assert "version 1.1.0 is not newer than the serving 1.2.0" in (st.reason or "")
        assert d.version == "1.2.0"

        # The signed way down: the same version as a rollback push.
        manifest, payloads = build_manifest(model_v2, fleet=FLEET, target="device:d", chunk_size=4096)
        back, _ = fleet.push(manifest.model_copy(update={"rollback_of": "1.2.0"}), payloads)
        st = fleet.board.wait_for(back.push_id, ["d"], 20)["d"]
        assert st is not None and st.state == "rolled_back" and d.version == "1.1.0"

        # Up again, then the old signed rollback replayed: a rollback attack, refused unread.
        up = _push(fleet, model_v3, "device:d", ["d"])
        assert fleet.connection.publish_and_wait(
            fleet.topics.manifest_all("digits-edge"), back.model_dump_json(), 5, retain=True
        )
        st = _refusals(fleet, "d", 1)
        assert f"push {back.push_id} was issued before push {up.push_id}" in (st.last_refusal or "")
        assert (st.state, st.push_id, d.version) == ("active", up.push_id, "1.2.0")
    finally:
        d.stop()
        fleet.connection.stop()


def _garbage(good: Manifest, rogue_key: Ed25519PrivateKey) -> list[bytes]:
    body = json.loads(good.model_dump_json())
    flipped = dict(
        body, signature=body["signature"][:-4] + ("AAAA" if body["signature"][-4:] != "AAAA" else "BBBB")
    )
    return [
        b"{",
        b"not json at all",
        b"\xff\xfe\x00garbage",
        b"null",
        b"42",
        b"[]",
        b"{}",
        json.dumps(flipped).encode(),  # bad signature
        json.dumps(dict(body, version=5)).encode(),  # wrong type
        json.dumps(dict(body, artifact="x")).encode(),  # wrong type, nested
        json.dumps(dict(body, signature=None)).encode(),  # unsigned
        json.dumps(dict(body, extra_field=1)).encode(),  # unknown field
        good.model_copy(update={"version": "9.9.9"}).signed(rogue_key).model_dump_json().encode(),
        b"[" * 200_000 + b"]" * 200_000,  # deeply nested
        b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
        b'{"x":"' + b"A" * (MAX_MANIFEST_BYTES + 10) + b'"}',  # huge
    ]


def test_garbage_on_manifest_topics_is_counted_and_never_flips_the_status(
    broker: BrokerProcess, tmp_path: Path, signing_key: Ed25519PrivateKey, model_v2: Path, model_v3: Path
) -> None:
    d = Device.start(make_profile(tmp_path, "d", broker.port, signing_key.public_key(), groups=["g"]))
    fleet = start_fleet(broker.port, signing_key, tmp_path / "fleet")
    try:
        wait_until(lambda: "d" in fleet.board.statuses(), what="status")
        good = _push(fleet, model_v2, "device:d", ["d"])
        kept = fleet.board.statuses()["d"]
        payloads = _garbage(good, Ed25519PrivateKey.generate())
        topics = [
            fleet.topics.manifest_device("digits-edge", "d"),
            fleet.topics.manifest_group("digits-edge", "g"),
            fleet.topics.manifest_all("digits-edge"),
        ]
        sent = 0
        for payload in payloads:
            for topic in topics:
                assert fleet.connection.publish_and_wait(topic, payload, 10, retain=True)
                sent += 1
        wait_until(lambda: d.updater.refusals.count == sent, timeout_s=30, what=f"{sent} refusals")
        st = _refusals(fleet, "d", sent)
        assert (st.state, st.push_id, st.active_version, st.reason) == ("active", kept.push_id, "1.1.0", None)
        assert d.version == "1.1.0" and sent == 48

        # Not wedged: the next real push applies.
        _push(fleet, model_v3, "all", ["d"])
        assert d.version == "1.2.0"
    finally:
        d.stop()
        fleet.connection.stop()
