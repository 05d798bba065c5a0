"""Canary then promote, fleet rollback, automatic rollback on errors, delta updates."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edgecascade.cloud.fleet.manifest_builder import build_manifest
from edgecascade.edge.cascade import Cascade, CascadeRequest
from edgecascade.shared.errors import EdgecascadeError
from edgecascade.tools.mqtt_broker import BrokerProcess
from tests.edge.updates.helpers import FLEET, MODELS, Device, make_profile, start_fleet, wait_until


def test_canary_widens_only_on_promote_and_rollback_restores(
    broker: BrokerProcess, tmp_path: Path, signing_key: Ed25519PrivateKey, model_v2: Path, model_v3: Path
) -> None:
    devices = [
        Device.start(make_profile(tmp_path, f"d{i}", broker.port, signing_key.public_key(), groups=["g"]))
        for i in range(4)
    ]
    fleet = start_fleet(broker.port, signing_key, tmp_path / "fleet")
    try:
        wait_until(lambda: len(fleet.board.statuses()) == 4, what="4 statuses")
        manifest, payloads = build_manifest(model_v2, fleet=FLEET, target="group:g", chunk_size=4096)
        signed, sent = fleet.push(manifest, payloads)
        fleet.board.wait_for(signed.push_id, sent, 30)
        assert [d.version for d in devices] == ["1.1.0"] * 4

        manifest, payloads = build_manifest(model_v3, fleet=FLEET, target="group:g", chunk_size=4096)
        signed, sent = fleet.push(manifest, payloads, canary_percent=25)
        assert sent == ["d0"]
        fleet.board.wait_for(signed.push_id, sent, 30)
        assert [d.version for d in devices] == ["1.2.0", "1.1.0", "1.1.0", "1.1.0"]

        record, widened = fleet.promote()
        assert record.push_id == signed.push_id and widened == ["d0", "d1", "d2", "d3"]
        done = fleet.board.wait_for(signed.push_id, widened, 30)
        assert {d: s.state for d, s in done.items() if s} == dict.fromkeys(widened, "active")
        assert [d.version for d in devices] == ["1.2.0"] * 4

        back, sent = fleet.rollback("digits-edge", "group:g")
        assert back.version == "1.1.0" and back.rollback_of == "1.2.0"
        done = fleet.board.wait_for(back.push_id, sent, 30)
        assert {d: s.state for d, s in done.items() if s} == dict.fromkeys(sent, "rolled_back")
        assert [d.version for d in devices] == ["1.1.0"] * 4
        # The kept previous version was on disk: nothing was downloaded again.
        assert all(
            d.updater.pipeline.bytes_downloaded == 2 * payloads[0].blob.size_bytes for d in devices[1:]
        )
    finally:
        for d in devices:
            d.stop()
        fleet.connection.stop()


def test_delta_update_sends_fewer_bytes_and_matches_full_hash(
    broker: BrokerProcess, tmp_path: Path, signing_key: Ed25519PrivateKey, model_v2: Path
) -> None:
    device = Device.start(make_profile(tmp_path, "d1", broker.port, signing_key.public_key()))
    fleet = start_fleet(broker.port, signing_key, tmp_path / "fleet")
    try:
        wait_until(lambda: "d1" in fleet.board.statuses(), what="status")
        manifest, payloads = build_manifest(
            model_v2,
            fleet=FLEET,
            target="device:d1",
            delta_base=MODELS / "digits_edge_fp32.onnx",
            chunk_size=1024,
        )
        assert manifest.delta is not None and manifest.delta.base_version == "1.0.0"
        signed, _ = fleet.push(manifest, payloads)
        st = fleet.board.wait_for(signed.push_id, ["d1"], 30)["d1"]
        assert st is not None and st.state == "active"
        assert device.version == "1.1.0"
        assert device.slot.current.path.read_bytes() == model_v2.read_bytes()
        got = device.updater.pipeline.bytes_downloaded
        assert got == manifest.delta.blob.size_bytes < manifest.artifact.size_bytes
    finally:
        device.stop()
        fleet.connection.stop()


def test_error_rate_after_swap_rolls_back_automatically(
    broker: BrokerProcess, tmp_path: Path, signing_key: Ed25519PrivateKey, digits_split: tuple
) -> None:
    """The candidate passes its golden vectors (one row at a time) but cannot serve the batches of
    4 this device sends: a real failure only live traffic shows. The watch rolls it back."""
    import onnx

    src = onnx.load(str(MODELS / "digits_edge_fp32.onnx"))
    src.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 1  # fixed batch of one
    fixed = tmp_path / "fixed" / "digits_edge_fp32.onnx"
    fixed.parent.mkdir()
    onnx.save(src, str(fixed))
    from edgecascade.shared.model_card import ModelCard

    ModelCard.load_for(MODELS / "digits_edge_fp32.onnx").model_copy(update={"version": "2.0.0"}).save_beside(
        fixed
    )

    profile = make_profile(
        tmp_path,
        "d1",
        broker.port,
        signing_key.public_key(),
        updates={"watch_window_s": 20.0, "max_error_rate": 0.1, "min_requests": 10},
    )
    device = Device.start(profile)
    fleet = start_fleet(broker.port, signing_key, tmp_path / "fleet")
    health = device.updater.health
    assert health is not None
    cascade = Cascade(device.slot, observers=[health.observe])
    _, held = digits_split
    try:
        wait_until(lambda: "d1" in fleet.board.statuses(), what="status")
        manifest, payloads = build_manifest(fixed, fleet=FLEET, target="device:d1")
        signed, _ = fleet.push(manifest, payloads)
        wait_until(lambda: device.version == "2.0.0", what="swap to 2.0.0")
        failures = 0
        deadline = time.monotonic() + 15
        i = 0
        while time.monotonic() < deadline:
            i = (i + 1) % 100
            batch = held.features[i * 4 : i * 4 + 4]
            try:
                device.slot.probabilities(batch)
                for row in batch:
                    cascade.answer(CascadeRequest(np.asarray(row)))
            except EdgecascadeError:
                failures += 1  # the slot told the health watch: 1 failed call per 5
            if device.version == "1.0.0":
                break
            time.sleep(0.01)
        wait_until(lambda: fleet.board.statuses()["d1"].state == "rolled_back", what="rolled_back status")
        st = fleet.board.statuses()["d1"]
        assert failures >= 3
        assert st is not None and st.state == "rolled_back" and "error rate" in (st.reason or "")
        assert device.version == "1.0.0"
        assert device.slot.probabilities(held.features[:4])[1].shape == (4, 10)
    finally:
        device.stop()
        fleet.connection.stop()
