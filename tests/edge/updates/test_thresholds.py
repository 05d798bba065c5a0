"""Escalation thresholds from the manifest: applied to the running cascade when the model starts
serving, after a restart on the updated model, and restored by a rollback."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edgecascade.cloud.fleet.manifest_builder import build_manifest
from edgecascade.edge.cascade import Cascade, CascadeRequest
from edgecascade.edge.config.profile import DeviceProfile
from edgecascade.edge.local_model import LocalModel, backend_options
from edgecascade.edge.model_slot import ModelSlot
from edgecascade.edge.policies import EntropyPolicy, MarginPolicy, MaxProbabilityPolicy
from edgecascade.edge.policies.from_config import build_policy
from edgecascade.edge.updates import active_model_path, build
from edgecascade.edge.updates.updater import ModelUpdater
from edgecascade.shared.manifest import EscalationThreshold
from edgecascade.shared.mqtt import MqttConnection, Topics
from edgecascade.tools.mqtt_broker import BrokerProcess
from tests.edge.updates.helpers import FLEET, make_profile, start_fleet, wait_until


class CascadeDevice:
    """A device as the daemon builds it: one slot, a cascade on it, the updater given the cascade."""

    def __init__(self, profile: DeviceProfile) -> None:
        self.slot = ModelSlot(LocalModel.load(active_model_path(profile), backend_options(profile)))
        self.cascade = Cascade(self.slot, build_policy(profile.cascade, self.slot.current.card.labels))
        settings = profile.mqtt.settings(profile.device_id, Topics(FLEET).presence(profile.device_id))
        settings.reconnect_min_s = 0.2
        self.connection = MqttConnection(settings)
        self.updater: ModelUpdater = build(profile, self.connection, self.slot, cascade=self.cascade)
        self.updater.start()
        assert self.connection.start(wait_s=5)

    def hard_count(self, rows: np.ndarray) -> int:
        return sum(self.cascade.answer(CascadeRequest(row)).escalated for row in rows)

    def stop(self) -> None:
        self.updater.stop(5)
        self.connection.stop()
        self.slot.close()


def _expected_hard(slot: ModelSlot, rows: np.ndarray, policy: object) -> int:
    _, probs = slot.probabilities(rows)
    return sum(policy.decide(p).hard for p in probs)  # type: ignore[attr-defined]


def test_manifest_thresholds_follow_the_serving_model(
    broker: BrokerProcess,
    tmp_path: Path,
    signing_key: Ed25519PrivateKey,
    model_v2: Path,
    model_v3: Path,
    digits_split: tuple,
) -> None:
    _, held = digits_split
    rows = held.features[:200].astype(np.float32)
    profile = make_profile(tmp_path, "d1", broker.port, signing_key.public_key())
    device = CascadeDevice(profile)
    fleet = start_fleet(broker.port, signing_key, tmp_path / "fleet")
    try:
        # The factory model has no manifest: the profile's [cascade] policy (max_prob 0.68).
        policy = device.cascade.policy
        assert isinstance(policy, MaxProbabilityPolicy) and policy.threshold == 0.68
        wait_until(lambda: "d1" in fleet.board.statuses(), what="status")

        margin = [EscalationThreshold(kind="margin", threshold=0.5)]
        manifest, payloads = build_manifest(model_v2, fleet=FLEET, target="device:d1", escalation=margin)
        signed, _ = fleet.push(manifest, payloads)
        assert fleet.board.wait_for(signed.push_id, ["d1"], 30)["d1"].state == "active"  # type: ignore[union-attr]
        policy = device.cascade.policy
        assert isinstance(policy, MarginPolicy) and policy.threshold == 0.5
        # Real behaviour: the cascade escalates exactly the rows a margin-0.5 policy calls hard,
        # which differs from what the factory threshold would escalate on the same model.
        hard = device.hard_count(rows)
        assert hard == _expected_hard(device.slot, rows, MarginPolicy(0.5))
        assert hard != _expected_hard(device.slot, rows, MaxProbabilityPolicy(0.68))

        entropy = [EscalationThreshold(kind="entropy", threshold=0.2)]
        manifest, payloads = build_manifest(model_v3, fleet=FLEET, target="device:d1", escalation=entropy)
        signed, _ = fleet.push(manifest, payloads)
        assert fleet.board.wait_for(signed.push_id, ["d1"], 30)["d1"].state == "active"  # type: ignore[union-attr]
        assert device.slot.current.card.version == "1.2.0"
        assert isinstance(device.cascade.policy, EntropyPolicy) and device.cascade.policy.threshold == 0.2
        assert device.hard_count(rows) == _expected_hard(device.slot, rows, EntropyPolicy(0.2))

        # A fleet rollback brings 1.1.0 back with its own thresholds.
        back, _ = fleet.rollback("digits-edge", "device:d1")
        assert fleet.board.wait_for(back.push_id, ["d1"], 30)["d1"].state == "rolled_back"  # type: ignore[union-attr]
        assert device.slot.current.card.version == "1.1.0"
        assert isinstance(device.cascade.policy, MarginPolicy) and device.cascade.policy.threshold == 0.5
    finally:
        device.stop()

    # After a restart on the updated model, its thresholds apply from start() on.
    restarted = CascadeDevice(profile)
    try:
        assert restarted.slot.current.card.version == "1.1.0"
        policy = restarted.cascade.policy
        assert isinstance(policy, MarginPolicy) and policy.threshold == 0.5
        # The previous version kept on disk carries its own manifest (used by automatic rollback).
        previous = restarted.updater.pipeline.previous
        assert previous is not None and previous.version == "1.2.0"
        kept = restarted.updater.store.manifest_of(previous)
        assert kept is not None and kept.escalation == entropy
        assert restarted.updater.store.manifest_of(restarted.updater.pipeline.current) is not None
    finally:
        restarted.stop()
        fleet.connection.stop()
