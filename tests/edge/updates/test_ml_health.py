"""ML-aware health after a swap, with real "bad" models that load and pass their golden vectors
but behave worse: an MLP trained on shuffled labels (unsure of everything), and the factory
model with its output classes rotated by one (as sure as before, and wrong)."""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edgecascade.cloud.fleet.manifest_builder import build_manifest
from edgecascade.cloud.fleet.status_board import format_table
from edgecascade.edge.cascade import Cascade, CascadeRequest
from edgecascade.edge.cloud_client.in_process import InProcessCloudClient
from edgecascade.edge.local_model import LocalModel
from edgecascade.edge.model_slot import ModelSlot
from edgecascade.edge.policies import AnyOf, MaxProbabilityPolicy, RandomSamplePolicy
from edgecascade.edge.updates.health_watch import HealthMonitor
from edgecascade.edge.updates.ml_health_watches import ml_watches
from edgecascade.shared.backends import BackendOptions
from edgecascade.shared.errors import ConfigError
from edgecascade.shared.manifest import HealthLimits
from edgecascade.tools.mqtt_broker import BrokerProcess
from tests.edge.updates.helpers import FLEET, MODELS, Device, make_profile, start_fleet, wait_until

LIMITS = HealthLimits(
    max_escalation_rate_increase=0.10,
    max_confidence_drop=0.10,
    max_latency_ratio=20.0,
    max_disagreement_increase=0.10,
    min_requests=50,
    min_samples=20,
)


@pytest.fixture(scope="module")
def shuffled_model(tmp_path_factory: pytest.TempPathFactory, digits_split: tuple) -> Path:
    """The demo edge MLP's recipe trained on shuffled labels: loads, runs, learns nothing."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    from edgecascade.tools.build_demo import evaluate, write_card
    from edgecascade.tools.onnx_export import mlp_to_onnx

    train, held = digits_split
    labels = np.random.default_rng(0).permutation(train.labels)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        mlp = MLPClassifier((128,), alpha=0.1, max_iter=200, random_state=0).fit(train.features, labels)
    path = tmp_path_factory.mktemp("shuffled") / "digits_edge_fp32.onnx"
    mlp_to_onnx(mlp, train.features.shape[1], path)
    write_card(
        path,
        name="digits-edge",
        version="2.0.0",
        quantization="none",
        probs=evaluate(path, held.features),
        labels=held.labels,
        float_source=None,
        tools={},
    )
    return path


@pytest.fixture(scope="module")
def rotated_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The factory fp32 model with its last layer's classes rotated by one: digit d reads d+1."""
    import onnx
    from onnx import numpy_helper

    from edgecascade.shared.model_card import ModelCard

    model = onnx.load(str(MODELS / "digits_edge_fp32.onnx"))
    last = max(int(i.name[1:]) for i in model.graph.initializer if i.name.startswith("W"))
    for init in model.graph.initializer:
        if init.name in (f"W{last}", f"B{last}"):
            arr = np.roll(numpy_helper.to_array(init), 1, axis=-1)
            init.CopyFrom(numpy_helper.from_array(arr, init.name))
    path = tmp_path_factory.mktemp("rotated") / "digits_edge_fp32.onnx"
    onnx.save(model, str(path))
    card = ModelCard.load_for(MODELS / "digits_edge_fp32.onnx")
    card.model_copy(update={"version": "2.0.1", "file": path.name}).save_beside(path)
    return path


def _cascade(slot: ModelSlot, health: HealthMonitor, cloud: InProcessCloudClient) -> Cascade:
    policy = AnyOf([MaxProbabilityPolicy(0.68), RandomSamplePolicy(0.4, seed=0)])
    return Cascade(slot, policy, cloud=cloud, observers=[health.observe])


def _load(path: Path) -> LocalModel:
    return LocalModel.load(path, BackendOptions(warmup_runs=0))


def _judge(new_model: Path, held: object, n_after: int = 120) -> tuple[HealthMonitor, str | None]:
    """Serve 300 held-out digits with the factory model, swap to `new_model`, serve `n_after`."""
    from edgecascade.shared.manifest import Manifest

    health = HealthMonitor(ml_watches())
    cloud = InProcessCloudClient(MODELS / "digits_cloud.onnx")
    slot = ModelSlot(_load(MODELS / "digits_edge_fp32.onnx"))
    cascade = _cascade(slot, health, cloud)
    features = held.features  # type: ignore[attr-defined]
    try:
        for row in features[:300]:
            cascade.answer(CascadeRequest(row))
        assert health.verdict() is None  # no swap yet: nothing to judge
        new = _load(new_model)
        slot.swap(new)
        manifest = Manifest.model_construct(version=new.card.version, health=LIMITS)
        health.begin(manifest)
        for row in features[300 : 300 + n_after]:
            cascade.answer(CascadeRequest(row))
        return health, health.verdict()
    finally:
        slot.close()
        cloud.close()


def test_unsure_model_trips_escalation_rate(shuffled_model: Path, digits_split: tuple) -> None:
    _, held = digits_split
    health, verdict = _judge(shuffled_model, held)
    figures = health.figures()
    esc = figures["escalation_rate"]
    assert esc.before is not None and esc.before < 0.15 and esc.after == 1.0 and esc.samples == 120
    assert verdict == f"escalation rate 1.00 vs {esc.before:.2f} before (limit +0.10)"
    # Everything escalates, so the edge model served nothing itself: no confidence to judge.
    assert figures["confidence"].after is None and figures["confidence"].before is not None


def test_confidently_wrong_model_trips_disagreement_only(rotated_model: Path, digits_split: tuple) -> None:
    _, held = digits_split
    health, verdict = _judge(rotated_model, held, n_after=240)
    figures = health.figures()
    # Same probabilities, other labels: rate, confidence and latency look as healthy as before.
    assert figures["escalation_rate"].after == pytest.approx(figures["escalation_rate"].before, abs=0.06)
    assert figures["confidence"].after == pytest.approx(figures["confidence"].before, abs=0.03)
    dis = figures["disagreement"]
    assert dis.before is not None and dis.before <= 0.05
    assert dis.after is not None and dis.after >= 0.9 and dis.samples >= LIMITS.min_samples
    assert verdict is not None and verdict.startswith("edge/cloud disagreement ")
    assert f"vs {dis.before:.2f} before (limit +0.10)" in verdict


def test_fine_tuned_model_passes(model_v2: Path, digits_split: tuple) -> None:
    _, held = digits_split
    health, verdict = _judge(model_v2, held, n_after=240)
    assert verdict is None
    figures = health.figures()
    assert set(figures) == {"escalation_rate", "confidence", "latency_ms", "disagreement"}
    assert all(f.before is not None and f.after is not None for f in figures.values())


def test_bad_model_pushed_to_a_device_is_rolled_back_for_its_escalation_rate(
    broker: BrokerProcess,
    tmp_path: Path,
    signing_key: Ed25519PrivateKey,
    shuffled_model: Path,
    digits_split: tuple,
) -> None:
    _, held = digits_split
    profile = make_profile(
        tmp_path, "d1", broker.port, signing_key.public_key(), updates={"watch_window_s": 20.0}
    )
    device = Device.start(profile)
    fleet = start_fleet(broker.port, signing_key, tmp_path / "fleet")
    health = device.updater.health
    assert health is not None
    cloud = InProcessCloudClient(MODELS / "digits_cloud.onnx")
    cascade = _cascade(device.slot, health, cloud)
    try:
        wait_until(lambda: "d1" in fleet.board.statuses(), what="status")
        for row in held.features[:300]:  # the factory model's baseline
            cascade.answer(CascadeRequest(row))
        manifest, payloads = build_manifest(shuffled_model, fleet=FLEET, target="device:d1")
        signed, _ = fleet.push(manifest.model_copy(update={"health": LIMITS}), payloads)
        wait_until(lambda: device.version == "2.0.0", what="swap to 2.0.0")
        deadline = time.monotonic() + 15
        i = 300
        while device.version == "2.0.0" and time.monotonic() < deadline:
            cascade.answer(CascadeRequest(held.features[i % len(held.features)]))
            i += 1
            if i % 20 == 0:
                time.sleep(0.02)  # let the updater's watch look
        wait_until(lambda: fleet.board.statuses()["d1"].state == "rolled_back", what="rolled_back status")
        st = fleet.board.statuses()["d1"]
        assert device.version == "1.0.0" and st.active_version == "1.0.0" and st.push_id == signed.push_id
        assert st.reason is not None and st.reason.startswith("escalation rate 1.00 vs 0.")
        assert st.reason.endswith("before (limit +0.10); back to 1.0.0")
        esc = st.health["escalation_rate"]
        assert esc.after == 1.0 and esc.before is not None and esc.before < 0.15
        assert esc.samples >= LIMITS.min_requests
        table = format_table(fleet.board.statuses(), fleet.board.presence)
        assert f"esc {esc.before:.2f}->1.00" in table and "HEALTH" in table
    finally:
        device.stop()
        fleet.connection.stop()
        cloud.close()


def test_healthy_canary_reports_its_figures_after_the_window(
    broker: BrokerProcess,
    tmp_path: Path,
    signing_key: Ed25519PrivateKey,
    model_v2: Path,
    digits_split: tuple,
) -> None:
    _, held = digits_split
    profile = make_profile(
        tmp_path, "d1", broker.port, signing_key.public_key(), updates={"watch_window_s": 8.0}
    )
    device = Device.start(profile)
    fleet = start_fleet(broker.port, signing_key, tmp_path / "fleet")
    health = device.updater.health
    assert health is not None
    cloud = InProcessCloudClient(MODELS / "digits_cloud.onnx")
    cascade = _cascade(device.slot, health, cloud)
    try:
        wait_until(lambda: "d1" in fleet.board.statuses(), what="status")
        for row in held.features[:300]:
            cascade.answer(CascadeRequest(row))
        manifest, payloads = build_manifest(model_v2, fleet=FLEET, target="device:d1")
        fleet.push(manifest.model_copy(update={"health": LIMITS}), payloads)
        wait_until(lambda: device.version == "1.1.0", what="swap to 1.1.0")
        for row in held.features[300:540]:
            cascade.answer(CascadeRequest(row))

        def reported() -> bool:
            fig = fleet.board.statuses()["d1"].health.get("escalation_rate")
            return fig is not None and fig.samples == 240

        try:
            wait_until(reported, timeout_s=20, what="health figures after the window")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; last status {fleet.board.statuses()['d1']}") from None
        st = fleet.board.statuses()["d1"]
        assert st.state == "active" and st.active_version == "1.1.0" and st.reason is None
        assert set(st.health) == {"escalation_rate", "confidence", "latency_ms", "disagreement"}
        assert all(f.before is not None and f.after is not None for f in st.health.values())
    finally:
        device.stop()
        fleet.connection.stop()
        cloud.close()


def test_push_flags_carry_health_limits_into_the_manifest() -> None:
    import argparse

    from edgecascade.cloud.fleet.updates_cli import _health_limits, add_parsers

    parser = argparse.ArgumentParser()
    add_parsers(parser.add_subparsers())
    args = parser.parse_args(
        [
            "push",
            "m.onnx",
            "--target",
            "all",
            "--health-max-escalation-rate-increase",
            "0.1",
            "--health-min-requests",
            "80",
        ]
    )
    assert _health_limits(args) == HealthLimits(max_escalation_rate_increase=0.1, min_requests=80)
    assert _health_limits(parser.parse_args(["push", "m.onnx", "--target", "all"])) is None
    bad = parser.parse_args(["push", "m.onnx", "--target", "all", "--health-max-latency-ratio", "0.5"])
    with pytest.raises(ConfigError, match="--health-max-latency-ratio"):
        _health_limits(bad)
