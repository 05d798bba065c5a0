"""Lookup tables delivered like models: real Mosquitto, real tables built by the real cloud model
over the real held-out digits, devices swapping tables without a restart."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edgecascade.cloud.fleet.manifest_builder import build_manifest, make_blob
from edgecascade.cloud.fleet.table_manifest_builder import build_table_manifest
from edgecascade.edge import lookup as edge_lookup
from edgecascade.edge.cascade import CascadeRequest
from edgecascade.edge.config.profile import DeviceProfile
from edgecascade.edge.lookup import LookupParts
from edgecascade.edge.updates import build_table_updater
from edgecascade.edge.updates.table_updater import TableUpdater
from edgecascade.shared.features.spec import ENCODING_VERSION
from edgecascade.shared.lookup import write_table
from edgecascade.shared.lookup.keys import content_key
from edgecascade.shared.mqtt import MqttConnection, Topics
from edgecascade.tools.build_table import CloudModelRunner, TableInputs, build_table
from edgecascade.tools.mqtt_broker import BrokerProcess
from tests.edge.updates.helpers import FLEET, Device, make_profile, start_fleet, wait_until

CHUNK = 4096


@pytest.fixture(scope="module")
def tables(tmp_path_factory: pytest.TempPathFactory, models_dir: Path, digits_split) -> dict[str, Path]:  # type: ignore[no-untyped-def]
    """t1, t2: real content-keyed tables over the held-out digits; t3_corrupt: a real table
    with one body byte flipped; enc_next: real outputs keyed for the next encoding version."""
    _, held = digits_split
    out = tmp_path_factory.mktemp("pushed-tables")
    runner = CloudModelRunner(models_dir / "digits_cloud.onnx")
    try:
        paths = {}
        for version in ("t1", "t2", "t3"):
            paths[version] = out / version / "digits.ectable"
            paths[version].parent.mkdir()
            inputs = TableInputs(held.features, None, "digits-heldout")
            build_table(
                models_dir / "digits_cloud.onnx",
                inputs,
                paths[version],
                scheme="content",
                name="digits",
                version=version,
                runner=runner,
            )
        corrupt = bytearray(paths["t3"].read_bytes())
        corrupt[-1] ^= 0x40
        paths["t3_corrupt"] = out / "t3" / "corrupt.ectable"
        paths["t3_corrupt"].write_bytes(bytes(corrupt))
        enc = ENCODING_VERSION + 1
        keys = [content_key(row, enc) for row in held.features]
        paths["enc_next"] = out / "enc" / "digits.ectable"
        paths["enc_next"].parent.mkdir()
        write_table(
            paths["enc_next"],
            np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(len(keys), -1),
            runner.probabilities(held.features),
            name="digits",
            version="t9",
            cloud_model=runner.card.name,
            cloud_model_version=runner.card.version,
            encoding_version=enc,
            key_scheme="content",
            labels=list(runner.card.labels),
        )
    finally:
        runner.close()
    return paths


@dataclass
class TableDevice:
    """An in-thread device with the daemon's table parts: lookups from edge_lookup.build and the
    table updater on its own MQTT connection."""

    parts: LookupParts
    connection: MqttConnection
    updater: TableUpdater

    owns_connection: bool = True

    @classmethod
    def start(cls, profile, shared: MqttConnection | None = None) -> TableDevice:  # type: ignore[no-untyped-def]
        """With `shared`, run on that (started) connection, as the daemon does beside the model updater."""
        parts = edge_lookup.build(profile)
        presence = Topics(profile.fleet).presence(profile.device_id)
        connection = shared or MqttConnection(profile.mqtt.settings(profile.device_id, presence))
        updater = build_table_updater(profile, connection, parts.table)
        assert updater is not None
        updater.start()
        if shared is None:
            assert connection.start(wait_s=5)
        return cls(parts, connection, updater, owns_connection=shared is None)

    def answer_source(self, features: np.ndarray) -> tuple[str, str | None] | None:
        answer = self.parts.table.lookup(CascadeRequest(features))
        return None if answer is None else (answer.source, answer.table_version)

    def stop(self) -> None:
        self.updater.stop(5)
        if self.owns_connection:
            self.connection.stop()
        self.parts.close()


def _push(fleet, table: Path, target: str, devices: list[str], **kw):  # type: ignore[no-untyped-def]
    manifest, payloads = build_table_manifest(table, fleet=FLEET, target=target, chunk_size=CHUNK, **kw)
    signed, sent = fleet.push(manifest, payloads)
    return signed, sent, fleet.board.wait_for(signed.push_id, devices, 30, kind="table")


def test_push_to_two_devices_answers_from_it_and_survives_restart(
    broker: BrokerProcess,
    tmp_path: Path,
    signing_key: Ed25519PrivateKey,
    tables: dict[str, Path],
    digits_split,
) -> None:  # type: ignore[no-untyped-def]
    _, held = digits_split
    key = signing_key.public_key()
    profiles = [make_profile(tmp_path, d, broker.port, key, groups=["g1"]) for d in ("d1", "d2")]
    devices = [TableDevice.start(p) for p in profiles]
    fleet = start_fleet(broker.port, signing_key, tmp_path / "fleet")
    try:
        wait_until(lambda: len(fleet.board.table_statuses()) == 2, what="2 table statuses")
        assert [d.answer_source(held.features[0]) for d in devices] == [None, None]
        signed, sent, done = _push(fleet, tables["t1"], "group:g1", ["d1", "d2"])
        assert sent == ["d1", "d2"]
        assert {d: (s.state, s.active_version) for d, s in done.items()} == {
            "d1": ("active", "t1"),
            "d2": ("active", "t1"),
        }
        for device in devices:  # no restart: the running lookup answers from the pushed table
            answers = [device.answer_source(row) for row in held.features]
            assert answers == [("table", "t1")] * len(held.features)
        # Installed under <data_dir>/tables/<version>/ with an atomic pointer.
        assert (profiles[0].data_dir / "tables" / "t1" / "digits.ectable").is_file()
        devices[0].stop()
        devices[0] = TableDevice.start(profiles[0])  # restart: the delivered table is loaded
        assert devices[0].parts.table.version == "t1"
        assert devices[0].answer_source(held.features[5]) == ("table", "t1")
        st = fleet.board.wait_for(signed.push_id, ["d1"], 10, kind="table")["d1"]
        assert st is not None and st.state == "active" and st.active_version == "t1"
    finally:
        for d in devices:
            d.stop()
        fleet.connection.stop()


def test_bad_tables_are_refused_and_the_previous_keeps_serving(
    broker: BrokerProcess,
    tmp_path: Path,
    signing_key: Ed25519PrivateKey,
    tables: dict[str, Path],
    digits_split,
) -> None:  # type: ignore[no-untyped-def]
    _, held = digits_split
    device = TableDevice.start(make_profile(tmp_path, "d1", broker.port, signing_key.public_key()))
    fleet = start_fleet(broker.port, signing_key, tmp_path / "fleet")
    try:
        wait_until(lambda: "d1" in fleet.board.table_statuses(), what="table status")
        _, _, done = _push(fleet, tables["t1"], "device:d1", ["d1"])
        assert done["d1"].state == "active"

        # Signed, but the file is corrupt: the real table validation refuses it at testing.
        manifest, _ = build_table_manifest(tables["t3"], fleet=FLEET, target="device:d1", chunk_size=CHUNK)
        data = tables["t3_corrupt"].read_bytes()
        blob = make_blob(data, Topics(FLEET).table_chunks("digits", "t3-corrupt"), CHUNK, None)
        manifest = manifest.model_copy(update={"artifact": blob})
        from edgecascade.cloud.fleet.manifest_builder import Payload

        signed, _ = fleet.push(manifest, [Payload(blob, data, "x")])
        st = fleet.board.wait_for(signed.push_id, ["d1"], 30, kind="table")["d1"]
        assert st is not None and st.state == "failed" and "checksum mismatch" in (st.reason or ""), st
        assert st.active_version == "t1"
        assert device.answer_source(held.features[0]) == ("table", "t1")
        assert device.parts.table.stats.load_failures == 0  # refused before it reached the swap
        assert not (tmp_path / "d1" / "data" / "tables" / "t3").exists()

        # Built for another feature-encoding version: refused before any download.
        _, _, done = _push(fleet, tables["enc_next"], "device:d1", ["d1"])
        st = done["d1"]
        assert st is not None and st.state == "failed"
        assert f"feature-encoding version {ENCODING_VERSION + 1}" in (st.reason or "")
        assert device.answer_source(held.features[0]) == ("table", "t1")

        # One chunk replaced on the broker by someone without the key.
        manifest, payloads = build_table_manifest(
            tables["t2"], fleet=FLEET, target="device:d1", chunk_size=CHUNK
        )
        fleet.publish_payloads(payloads)
        blob = payloads[0].blob
        start, end = blob.chunk_bounds(2)
        evil = bytearray(payloads[0].data[start:end])
        evil[7] ^= 0xFF
        assert fleet.connection.publish_and_wait(f"{blob.topic}/2", bytes(evil), 5, retain=True)
        signed, _ = fleet.push(manifest, [])
        st = fleet.board.wait_for(signed.push_id, ["d1"], 30, kind="table")["d1"]
        assert st is not None and st.state == "failed" and "tampered" in (st.reason or ""), st
        assert device.answer_source(held.features[0]) == ("table", "t1")

        # Signed by another key: counted and logged, the status keeps its last state.
        before = fleet.board.table_statuses()["d1"]
        rogue = start_fleet(broker.port, Ed25519PrivateKey.generate(), tmp_path / "rogue")
        manifest, payloads = build_table_manifest(
            tables["t2"], fleet=FLEET, target="device:d1", chunk_size=CHUNK
        )
        rogue.push(manifest, payloads)
        wait_until(lambda: fleet.board.table_statuses()["d1"].refused_manifests == 1, what="refusal counted")
        rogue.connection.stop()
        st = fleet.board.table_statuses()["d1"]
        assert (st.state, st.push_id, st.reason) == (before.state, before.push_id, before.reason)
        assert "bad signature" in (st.last_refusal or "")
        assert device.updater.refusals.count == 1
        assert device.parts.table.version == "t1"
    finally:
        device.stop()
        fleet.connection.stop()


def test_model_and_table_pushes_coexist(
    broker: BrokerProcess,
    tmp_path: Path,
    signing_key: Ed25519PrivateKey,
    tables: dict[str, Path],
    model_v2: Path,
) -> None:
    key = signing_key.public_key()
    fleet = start_fleet(broker.port, signing_key, tmp_path / "fleet")
    started: list[Device | TableDevice] = []
    try:
        model_manifest, payloads = build_manifest(model_v2, fleet=FLEET, target="all", chunk_size=CHUNK)
        fleet.push(model_manifest, payloads)
        table_manifest, payloads = build_table_manifest(
            tables["t1"], fleet=FLEET, target="all", chunk_size=CHUNK
        )
        fleet.push(table_manifest, payloads)
        # A device that comes up afterwards finds both retained manifests, each on its own topic.
        profile = make_profile(tmp_path, "late", broker.port, key)
        model_device = Device.start(profile)
        started.append(model_device)
        table_device = TableDevice.start(profile, shared=model_device.connection)
        started.insert(0, table_device)
        wait_until(lambda: model_device.version == "1.1.0", what="model 1.1.0")
        wait_until(lambda: table_device.parts.table.version == "t1", what="table t1")
        model_st = fleet.board.wait_for(model_manifest.push_id, ["late"], 30)["late"]
        table_st = fleet.board.wait_for(table_manifest.push_id, ["late"], 30, kind="table")["late"]
        assert (model_st.state, model_st.active_version) == ("active", "1.1.0")
        assert (table_st.state, table_st.active_version) == ("active", "t1")
    finally:
        for d in started:
            d.stop()
        fleet.connection.stop()


def test_fleet_rollback_of_a_table_needs_no_download(
    broker: BrokerProcess,
    tmp_path: Path,
    signing_key: Ed25519PrivateKey,
    tables: dict[str, Path],
    digits_split,
) -> None:  # type: ignore[no-untyped-def]
    _, held = digits_split
    device = TableDevice.start(make_profile(tmp_path, "d1", broker.port, signing_key.public_key()))
    fleet = start_fleet(broker.port, signing_key, tmp_path / "fleet")
    try:
        wait_until(lambda: "d1" in fleet.board.table_statuses(), what="table status")
        assert _push(fleet, tables["t1"], "all", ["d1"])[2]["d1"].state == "active"
        assert _push(fleet, tables["t2"], "all", ["d1"])[2]["d1"].state == "active"
        assert device.answer_source(held.features[0]) == ("table", "t2")
        downloaded = device.updater.pipeline.bytes_downloaded
        assert downloaded == tables["t1"].stat().st_size + tables["t2"].stat().st_size

        signed, sent = fleet.rollback("digits", "all", kind="table")
        assert sent == ["d1"] and signed.version == "t1" and signed.rollback_of == "t2"
        st = fleet.board.wait_for(signed.push_id, ["d1"], 30, kind="table")["d1"]
        assert st is not None and st.state == "rolled_back" and st.active_version == "t1"
        assert device.answer_source(held.features[0]) == ("table", "t1")
        assert device.updater.pipeline.bytes_downloaded == downloaded  # t1 was kept on disk
        pointer = (tmp_path / "d1" / "data" / "tables" / "active").read_text()
        assert '"version": "t1"' in pointer
    finally:
        device.stop()
        fleet.connection.stop()


def test_fleet_cli_push_status_rollback_of_tables(
    broker: BrokerProcess,
    tmp_path: Path,
    tables: dict[str, Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    from edgecascade.cli import main
    from edgecascade.shared.manifest import load_private_key

    key_path = tmp_path / "fleet" / "signing.key"
    assert main(["fleet", "keygen", "--key", str(key_path)]) == 0
    public = load_private_key(key_path).public_key()
    profile = make_profile(tmp_path, "d1", broker.port, public, groups=["g"])
    model_device = Device.start(profile)
    device = TableDevice.start(profile, shared=model_device.connection)
    common = ["--fleet", FLEET, "--broker", f"127.0.0.1:{broker.port}", "--key", str(key_path)]
    common += ["--state-dir", str(tmp_path / "fleet"), "--timeout", "30"]
    try:
        wait_until(lambda: model_device.connection.connected.is_set(), what="device online")
        capsys.readouterr()
        for version in ("t1", "t2"):
            push = ["fleet", "push", str(tables[version]), "--kind", "table", "--version", version]
            assert main([*push, "--target", "group:g", *common]) == 0
            out = capsys.readouterr().out
            assert f"pushed table digits {version}" in out and "active: 1: d1" in out, out
        assert device.parts.table.version == "t2"
        wrong = ["fleet", "push", str(tables["t1"]), "--kind", "table", "--version", "t7"]
        assert main([*wrong, "--target", "all", *common]) == 1
        assert "holds table version 't1', not 't7'" in capsys.readouterr().err

        status = ["--fleet", FLEET, "--broker", f"127.0.0.1:{broker.port}"]  # read-only: no key
        assert main(["fleet", "status", "--wait", "0.3", *status]) == 0
        table = capsys.readouterr().out.strip().splitlines()
        assert "TABLE" in table[0] and "digits t2" in table[1], table

        rollback = ["fleet", "rollback", "--kind", "table", "--name", "digits", "--target", "group:g"]
        assert main([*rollback, *common]) == 0
        assert "rolled_back: 1: d1" in capsys.readouterr().out
        assert device.parts.table.version == "t1"
        assert model_device.version == "1.0.0"  # the model was not touched
    finally:
        device.stop()
        model_device.stop()


def test_replayed_table_manifests_and_garbage_on_table_topics_change_nothing(
    broker: BrokerProcess,
    tmp_path: Path,
    signing_key: Ed25519PrivateKey,
    tables: dict[str, Path],
    digits_split,
) -> None:  # type: ignore[no-untyped-def]
    _, held = digits_split
    d1 = TableDevice.start(make_profile(tmp_path, "d1", broker.port, signing_key.public_key(), groups=["g"]))
    fleet = start_fleet(broker.port, signing_key, tmp_path / "fleet")
    try:
        wait_until(lambda: "d1" in fleet.board.table_statuses(), what="table status")
        old, _, done = _push(fleet, tables["t1"], "device:d1", ["d1"])
        new, _, done = _push(fleet, tables["t2"], "device:d1", ["d1"])
        assert done["d1"] is not None and done["d1"].state == "active"
        kept = fleet.board.table_statuses()["d1"]
        topics = Topics(FLEET)
        levels = [
            topics.table_manifest_device("d1"),
            topics.table_manifest_group("g"),
            topics.table_manifest_all(),
        ]
        for_other = build_table_manifest(tables["t1"], fleet=FLEET, target="device:d9", chunk_size=CHUNK)[0]
        payloads = [
            old.model_dump_json().encode(),  # an older push replayed
            for_other.signed(signing_key).model_dump_json().encode(),  # signed for another device
            b"{",
            b"[" * 100_000 + b"]" * 100_000,
            b'{"kind": "table", "version": 3}',
        ]
        for payload in payloads:
            for topic in levels:
                assert fleet.connection.publish_and_wait(topic, payload, 5, retain=True)
        wait_until(lambda: fleet.board.table_statuses()["d1"].refused_manifests == 15, what="15 refusals")
        st = fleet.board.table_statuses()["d1"]
        assert (st.state, st.push_id, st.active_version) == (kept.state, new.push_id, "t2")
        assert d1.answer_source(held.features[0]) == ("table", "t2")
    finally:
        d1.stop()
        fleet.connection.stop()


def _two_model_profile(tmp_path: Path, port: int, key) -> DeviceProfile:  # type: ignore[no-untyped-def]
    """d1 serving classifiers a (the default lookup model) and b, each with its own table."""
    base = make_profile(tmp_path, "d1", port, key)
    data = base.model_dump(mode="json", exclude_none=True)
    data.pop("model")
    factory = data["data_dir"].rsplit("/", 1)[0] + "/factory/digits_edge_fp32.onnx"
    data["models"] = [{"name": "a", "path": factory}, {"name": "b", "path": factory}]
    return DeviceProfile.model_validate(data)


def test_a_table_pushed_for_model_b_swaps_only_bs_and_unknown_models_are_refused(
    broker: BrokerProcess,
    tmp_path: Path,
    signing_key: Ed25519PrivateKey,
    tables: dict[str, Path],
    digits_split,
) -> None:  # type: ignore[no-untyped-def]
    _, held = digits_split
    profile = _two_model_profile(tmp_path, broker.port, signing_key.public_key())
    parts = {m: edge_lookup.build(profile, m) for m in ("a", "b")}
    presence = Topics(FLEET).presence("d1")
    connection = MqttConnection(profile.mqtt.settings("d1", presence))
    updaters = {m: TableUpdater(profile, connection, parts[m].table, model=m) for m in ("a", "b")}
    assert (updaters["a"].name, updaters["b"].name) == ("table-updater", "table-updater-b")
    for updater in updaters.values():
        updater.start()
    assert connection.start(wait_s=5)
    fleet = start_fleet(broker.port, signing_key, tmp_path / "fleet")
    request = CascadeRequest(held.features[0])
    try:
        # For b, on b's topics: only b's table swaps.
        manifest, payloads = build_table_manifest(
            tables["t1"], fleet=FLEET, target="device:d1", chunk_size=CHUNK, model="b"
        )
        signed, _ = fleet.push(manifest, payloads)
        done = fleet.board.wait_for(signed.push_id, ["d1"], 30, kind="table")["d1"]
        assert done is not None and (done.model, done.state, done.active_version) == ("b", "active", "t1")
        assert parts["b"].table.version == "t1"
        answer = parts["b"].table.lookup(request)
        assert answer is not None and (answer.source, answer.table_version) == ("table", "t1")
        assert parts["a"].table.table is None and parts["a"].table.lookup(request) is None
        assert (tmp_path / "d1" / "data" / "lookups" / "b" / "tables" / "active").is_file()
        assert not (tmp_path / "d1" / "data" / "tables" / "active").exists()
        # A manifest naming no model is the default model's (a), on the topics of old clouds.
        manifest, payloads = build_table_manifest(
            tables["t2"], fleet=FLEET, target="device:d1", chunk_size=CHUNK
        )
        fleet.push(manifest, payloads)
        wait_until(lambda: parts["a"].table.version == "t2", what="a's table t2")
        assert parts["b"].table.version == "t1"
        # Tables for a model d1 does not serve, or for b on a's topics: refused, counted, no swap.
        topics = Topics(FLEET)
        for model, topic in (("zzz", topics.table_manifest_device("d1")), ("b", topics.table_manifest_all())):
            stray = build_table_manifest(
                tables["t3"], fleet=FLEET, target="all", chunk_size=CHUNK, model=model
            )[0]
            body = stray.model_copy(update={"issued_at": signed.issued_at + 100}).signed(signing_key)
            assert fleet.connection.publish_and_wait(topic, body.model_dump_json().encode(), 5, retain=True)
        wait_until(lambda: updaters["a"].refusals.count == 2, what="2 refusals")
        assert updaters["a"].counters() == {"refused_manifests": 2, "unknown_model": 1, "other_model": 1}
        assert updaters["b"].counters()["refused_manifests"] == 0
        assert (parts["a"].table.version, parts["b"].table.version) == ("t2", "t1")
        # A fleet rollback of b's table goes back to b's previous one, not to a's push.
        manifest, payloads = build_table_manifest(
            tables["t3"], fleet=FLEET, target="device:d1", chunk_size=CHUNK, model="b"
        )
        fleet.push(manifest, payloads)
        wait_until(lambda: parts["b"].table.version == "t3", what="b's table t3")
        back, _ = fleet.rollback("digits", "device:d1", "table", model="b")
        assert (back.model, back.version) == ("b", "t1")
        wait_until(lambda: parts["b"].table.version == "t1", what="b back on t1")
        assert parts["a"].table.version == "t2"
    finally:
        for updater in updaters.values():
            updater.stop(5)
        connection.stop()
        fleet.connection.stop()
        for p in parts.values():
            p.close()
