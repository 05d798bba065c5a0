"""A device upgraded in place: an older agent kept one store, the first model's, directly in
`<data_dir>/models/`. The new agent moves it to `<data_dir>/models/<model>/` and keeps serving
the update it had installed, with its previous version and its replay floor."""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edgecascade.cloud.fleet.manifest_builder import build_manifest
from edgecascade.edge.config.profile import DeviceProfile
from edgecascade.edge.updates import active_model_path
from edgecascade.edge.updates.store import (
    LAYOUT_MARKER,
    Installed,
    UpdateStore,
    factory_model,
    model_store,
    models_root,
)
from edgecascade.tools.mqtt_broker import BrokerProcess
from tests.edge.updates.helpers import FLEET, Device, make_profile, start_fleet, wait_until


def _old_single_store(profile: DeviceProfile, model_v2: Path, key: Ed25519PrivateKey) -> Installed:
    """What an older agent left after applying model_v2: the same store class, rooted at
    `<data_dir>/models/` itself (the path older agents used)."""
    manifest, payloads = build_manifest(model_v2, fleet=FLEET, target="device:d1", chunk_size=4096)
    signed = manifest.model_copy(update={"issued_at": 1000.0}).signed(key)
    store = UpdateStore(models_root(profile))
    staged = store.staging_file(signed.artifact.sha256)
    staged.write_bytes(payloads[0].data)
    installed = store.install(signed, staged)
    store.set_active(installed, factory_model(profile))
    store.record_outcome(signed.push_id, "active")
    store.record_instruction(signed.issued_at, signed.push_id)
    return installed


def test_an_upgraded_device_keeps_serving_its_installed_update(
    broker: BrokerProcess, tmp_path: Path, signing_key: Ed25519PrivateKey, model_v2: Path
) -> None:
    profile = make_profile(tmp_path, "d1", broker.port, signing_key.public_key())
    old = _old_single_store(profile, model_v2, signing_key)
    assert old.path.parent.parent == models_root(profile) / "versions"

    path = active_model_path(profile)
    moved = models_root(profile) / "digits-edge"
    assert path == moved / "versions" / "1.1.0" / "digits_edge_fp32.onnx" and path.is_file()
    assert (models_root(profile) / LAYOUT_MARKER).is_file()
    assert not (models_root(profile) / "active").exists() and not (models_root(profile) / "versions").exists()
    store = model_store(profile, "digits-edge")
    found = store.read_pointer()
    assert found is not None and found[1] == factory_model(profile)
    assert store.instruction().issued_at == 1000.0 and len(store.outcomes()) == 1

    device = Device.start(profile)
    fleet = start_fleet(broker.port, signing_key, tmp_path / "fleet")
    try:
        assert device.version == "1.1.0"
        assert device.updater.pipeline.previous == factory_model(profile)  # still rolls back
        wait_until(lambda: "d1" in fleet.board.statuses(), what="status")
        assert fleet.board.statuses()["d1"].active_version == "1.1.0"
    finally:
        device.stop()
        fleet.connection.stop()


def test_a_crash_in_the_middle_of_the_move_is_finished_on_the_next_start(
    tmp_path: Path, signing_key: Ed25519PrivateKey, model_v2: Path
) -> None:
    profile = make_profile(tmp_path, "d1", 1883, signing_key.public_key())
    _old_single_store(profile, model_v2, signing_key)
    root = models_root(profile)
    # Killed right after setting the old store aside: no models/ folder at all.
    os.replace(root, root.with_name("models.single-store"))
    assert active_model_path(profile).parent.name == "1.1.0"
    assert not root.with_name("models.single-store").exists()
    # Later starts find the new layout and leave it alone; a fresh model gets an empty store.
    assert active_model_path(profile) == root / "digits-edge" / "versions" / "1.1.0" / "digits_edge_fp32.onnx"
    assert model_store(profile, "other").read_pointer() is None
