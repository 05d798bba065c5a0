"""Updates per served model: an agent with a classifier and a tensor model, each with its own
updater (as the daemon builds them), over a real Mosquitto with real signed manifests. Each
model swaps, rolls back (automatically and by the fleet) and is health-watched on its own, has
its own retained manifests and status, and refuses manifests named for another model."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from onnx import TensorProto, helper

from edgecascade.cloud.fleet.manifest_builder import build_manifest
from edgecascade.edge.agent import Agent
from edgecascade.edge.config.profile import DeviceProfile
from edgecascade.edge.daemon.metrics import AgentMetrics
from edgecascade.edge.tasks.base import TaskRequest
from edgecascade.edge.updates import build_model_updaters, health_monitor
from edgecascade.edge.updates.health_watch import ErrorRateWatch
from edgecascade.edge.updates.updater import ModelUpdater
from edgecascade.shared.errors import EdgecascadeError
from edgecascade.shared.manifest import EscalationThreshold, public_key_b64
from edgecascade.shared.mqtt import MqttConnection, MqttSettings, Topics
from edgecascade.tools.model_import import ImportAnswers, import_model
from edgecascade.tools.mqtt_broker import BrokerProcess
from tests.edge.tasks import onnx_models
from tests.edge.updates.helpers import FLEET, MODELS, copy_model, start_fleet, wait_until

CLASSIFIER, SEG = "digits-edge", "seg"


def segmenter(path: Path, version: str) -> Path:
    """A real tensor model (image [1, 6, 5, 3] -> mask), its card beside it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx_models.segmenter(path)
    import_model(path, ImportAnswers(name=SEG, task="tensor", version=version)).card.save_beside(path)
    return path


def failing_segmenter(path: Path, version: str) -> Path:
    """A segmenter that loads and passes its warm-up (zeros) but fails on any real frame: a
    Gather whose index is 1 once a pixel exceeds 0.5, out of range of its one-element data."""
    w = helper.make_tensor("w", TensorProto.FLOAT, [3, 2], np.ones(6, dtype=np.float32).tolist())
    nodes = [
        helper.make_node("MatMul", ["image", "w"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["soft"], axis=-1),
        helper.make_node("ReduceMax", ["image"], ["peak"], keepdims=0),
        helper.make_node("Greater", ["peak", "half"], ["bright"]),
        helper.make_node("Cast", ["bright"], ["index"], to=TensorProto.INT64),
        helper.make_node("Gather", ["one", "index"], ["picked"], axis=0),
        helper.make_node("Mul", ["picked", "zero"], ["nothing"]),
        helper.make_node("Add", ["soft", "nothing"], ["mask"]),
    ]
    graph = helper.make_graph(
        nodes,
        "failing_seg",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 6, 5, 3])],
        [helper.make_tensor_value_info("mask", TensorProto.FLOAT, [1, 6, 5, 2])],
        initializer=[
            w,
            helper.make_tensor("half", TensorProto.FLOAT, [], [0.5]),
            helper.make_tensor("one", TensorProto.FLOAT, [1], [1.0]),
            helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0]),
        ],
    )
    import onnx

    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    import_model(path, ImportAnswers(name=SEG, task="tensor", version=version)).card.save_beside(path)
    return path


def two_model_profile(root: Path, port: int, key: Any) -> DeviceProfile:
    home = root / "d1"
    classifier = copy_model(MODELS / "digits_edge_fp32.onnx", home / "factory")
    seg = segmenter(home / "factory" / "seg.onnx", "1.0.0")
    return DeviceProfile.model_validate(
        {
            "profile": "x86-store-pc",
            "device_id": "d1",
            "fleet": FLEET,
            "groups": ["g"],
            "data_dir": str(home / "data"),
            "memory_budget_mb": 400,
            "runtime": {"warmup_runs": 1},
            "models": [
                {"name": CLASSIFIER, "path": str(classifier)},
                # Its own error-rate limits: [updates] alone would never judge in the window.
                {"name": SEG, "path": str(seg), "health": {"max_error_rate": 0.2, "min_requests": 5}},
            ],
            "mqtt": {"enabled": True, "port": port},
            "updates": {
                "enabled": True,
                "public_key": public_key_b64(key),
                "stall_timeout_s": 1.0,
                "download_timeout_s": 30.0,
                "check_timeout_s": 20.0,
                "watch_window_s": 15.0,
                "max_error_rate": 0.9,
                "min_requests": 100_000,
            },
        }
    )


class TwoModelDevice:
    """The agent and its per-model updaters on one MQTT connection, as the daemon assembles them."""

    def __init__(self, profile: DeviceProfile) -> None:
        self.profile = profile
        self.agent = Agent.from_profile(profile, use_lookups=False)
        settings = profile.mqtt.settings(profile.device_id, Topics(FLEET).presence(profile.device_id))
        settings.reconnect_min_s = 0.2
        self.connection = MqttConnection(settings)
        tasks = [served.task for served in self.agent.models.values()]
        self.updaters = {u.model: u for u in build_model_updaters(profile, self.connection, tasks)}
        for updater in self.updaters.values():
            updater.start()
        assert self.connection.start(wait_s=5)

    def version(self, model: str) -> str:
        return self.agent.get(model).slot.current.card.version

    def updater(self, model: str) -> ModelUpdater:
        return self.updaters[model]

    def errors(self, model: str) -> ErrorRateWatch:
        health = self.updater(model).health
        assert health is not None
        watch = health.watches[0]
        assert isinstance(watch, ErrorRateWatch)
        return watch

    def stop(self) -> None:
        for updater in self.updaters.values():
            updater.stop(5)
        self.connection.stop()
        self.agent.close()


def retained(port: int, topic: str) -> list[bytes]:
    """The retained message on `topic` as a new subscriber gets it (empty list: none)."""
    got: list[bytes] = []
    done = threading.Event()
    probe = MqttConnection(MqttSettings(port=port, client_id=f"probe-{time.monotonic_ns()}"))

    def on(msg: mqtt.MQTTMessage) -> None:
        got.append(bytes(msg.payload))
        done.set()

    probe.subscribe(topic, on)
    assert probe.start(wait_s=5)
    done.wait(1.0)
    probe.stop()
    return got


def test_each_model_updates_rolls_back_and_keeps_its_manifests_on_its_own(
    broker: BrokerProcess,
    tmp_path: Path,
    signing_key: Ed25519PrivateKey,
    model_v2: Path,
    model_v3: Path,
    digits_split: tuple,
) -> None:
    profile = two_model_profile(tmp_path, broker.port, signing_key.public_key())
    device = TwoModelDevice(profile)
    fleet = start_fleet(broker.port, signing_key, tmp_path / "fleet")
    topics = Topics(FLEET)
    _, held = digits_split
    rng = np.random.default_rng(3)
    frames = [rng.random((1, 6, 5, 3), dtype=np.float32) for _ in range(8)]
    try:
        wait_until(lambda: len(fleet.board.model_statuses()) == 2, what="a status per model")
        assert set(fleet.board.model_statuses()) == {("d1", CLASSIFIER), ("d1", SEG)}

        # The classifier, to the whole fleet, with its own thresholds.
        manifest, payloads = build_manifest(
            model_v2,
            fleet=FLEET,
            target="all",
            chunk_size=8192,
            escalation=[EscalationThreshold(kind="margin", threshold=0.3)],
        )
        signed, sent = fleet.push(manifest, payloads)
        assert sent == ["d1"]
        assert fleet.board.wait_for(signed.push_id, sent, 30, model=CLASSIFIER)["d1"].state == "active"
        assert (device.version(CLASSIFIER), device.version(SEG)) == ("1.1.0", "1.0.0")
        cascade = device.agent.cascade
        policy = cascade.policy
        assert type(policy).__name__ == "MarginPolicy"

        # The tensor model, to the whole fleet too: it swaps, the classifier stays as it is.
        seg_v11 = segmenter(tmp_path / "seg-1.1" / "seg.onnx", "1.1.0")
        manifest, payloads = build_manifest(seg_v11, fleet=FLEET, target="all", chunk_size=4096)
        signed, sent = fleet.push(manifest, payloads)
        assert fleet.board.wait_for(signed.push_id, sent, 30, model=SEG)["d1"].state == "active"
        assert (device.version(CLASSIFIER), device.version(SEG)) == ("1.1.0", "1.1.0")
        assert cascade.policy is policy  # no thresholds from a tensor model's manifest
        reply = device.agent.infer(SEG, TaskRequest({"image": frames[0]}))
        assert reply.model_version == "1.1.0" and reply.outputs["mask"].shape == (1, 6, 5, 2)
        # Each model has its own retained fleet-level manifest: seg's push replaced nothing.
        (kept,) = retained(broker.port, topics.manifest_all(CLASSIFIER))
        assert b'"name":"digits-edge"' in kept and b'"version":"1.1.0"' in kept
        (pushed,) = retained(broker.port, topics.manifest_all(SEG))
        assert b'"name":"seg"' in pushed
        statuses = fleet.board.model_statuses()
        assert statuses[("d1", CLASSIFIER)].active_version == "1.1.0"
        assert statuses[("d1", SEG)].active_version == "1.1.0"
        # edgecascade_model_info reads each slot: each model's own version after its update.
        metrics = AgentMetrics()
        metrics.track_models(lambda: [m.slot.current for m in device.agent.models.values()])
        text = metrics.render({}).decode()
        assert 'name="digits-edge",version="1.1.0"' in text and 'name="seg",version="1.1.0"' in text
        assert text.count("edgecascade_model_info{") == 2

        # A bad seg (fails on real frames, not on its warm-up): rolled back by seg's own watch.
        bad = failing_segmenter(tmp_path / "seg-2.0" / "seg.onnx", "2.0.0")
        manifest, payloads = build_manifest(bad, fleet=FLEET, target="device:d1", chunk_size=4096)
        signed, _ = fleet.push(manifest, payloads)
        wait_until(lambda: device.version(SEG) == "2.0.0", what="seg swapped to 2.0.0")
        classifier_before = device.errors(CLASSIFIER).answered
        failures = 0
        deadline = time.monotonic() + 12
        i = 0
        while device.version(SEG) == "2.0.0" and time.monotonic() < deadline:
            i += 1
            try:
                device.agent.infer(SEG, TaskRequest({"image": frames[i % len(frames)]}))
            except EdgecascadeError:
                failures += 1
            device.agent.predict(held.features[i % 100])  # the classifier keeps serving
            time.sleep(0.02)
        assert failures >= 5 and device.version(SEG) == "1.1.0"
        wait_until(
            lambda: fleet.board.statuses(SEG)["d1"].state == "rolled_back", what="seg rolled_back status"
        )
        seg_status = fleet.board.statuses(SEG)["d1"]
        assert "error rate" in (seg_status.reason or "") and seg_status.active_version == "1.1.0"
        # The classifier saw none of it: its version, its status, its own health counts.
        assert device.version(CLASSIFIER) == "1.1.0"
        classifier_status = fleet.board.statuses(CLASSIFIER)["d1"]
        assert classifier_status.state == "active" and classifier_status.active_version == "1.1.0"
        assert device.errors(CLASSIFIER).failed == 0
        assert device.errors(CLASSIFIER).answered > classifier_before
        assert device.agent.infer(SEG, TaskRequest({"image": frames[1]})).model_version == "1.1.0"

        # The classifier's next version, then a fleet rollback of it: seg is left alone.
        manifest3, payloads3 = build_manifest(model_v3, fleet=FLEET, target="all", chunk_size=8192)
        signed, sent = fleet.push(manifest3, payloads3)
        assert fleet.board.wait_for(signed.push_id, sent, 30, model=CLASSIFIER)["d1"].state == "active"
        assert (device.version(CLASSIFIER), device.version(SEG)) == ("1.2.0", "1.1.0")
        back, sent = fleet.rollback(CLASSIFIER, "all")
        done = fleet.board.wait_for(back.push_id, sent, 30, model=CLASSIFIER)
        assert done["d1"].state == "rolled_back"
        assert (device.version(CLASSIFIER), device.version(SEG)) == ("1.1.0", "1.1.0")
        assert cascade.policy is not policy and type(cascade.policy).__name__ == "MarginPolicy"

        # Signed manifests for a model the device does not serve, or for seg on the classifier's
        # topic: refused and counted on that model's status, nothing else changes.
        ghost = manifest.model_copy(update={"name": "ghost", "target": "device:d1", "issued_at": time.time()})
        wrong_topic = manifest.model_copy(update={"issued_at": time.time() + 1})
        for unsigned in (ghost, wrong_topic):
            fleet.publish_retained(
                topics.manifest_device(CLASSIFIER, "d1"),
                unsigned.signed(fleet.key).model_dump_json().encode(),
            )
        wait_until(lambda: fleet.board.statuses(CLASSIFIER)["d1"].refused_manifests == 2, what="two refusals")
        refused = fleet.board.statuses(CLASSIFIER)["d1"]
        assert refused.state == "rolled_back" and refused.active_version == "1.1.0"
        assert refused.last_refusal == f"manifest for model {SEG!r} came on the topics of {CLASSIFIER!r}"
        assert (device.version(CLASSIFIER), device.version(SEG)) == ("1.1.0", "1.1.0")
        assert fleet.board.statuses(SEG)["d1"].refused_manifests == 0
    finally:
        device.stop()
        fleet.connection.stop()

    # After a restart each model starts from its own store.
    again = Agent.from_profile(profile, use_lookups=False)
    try:
        assert again.get(CLASSIFIER).slot.current.card.version == "1.1.0"
        assert again.get(SEG).slot.current.card.version == "1.1.0"
    finally:
        again.close()
    stores = profile.data_dir / "models"
    assert (stores / SEG / "versions" / "1.1.0" / "seg.onnx").is_file()
    assert (stores / CLASSIFIER / "active").is_file()


def test_a_manifest_for_a_model_not_served_is_refused(
    broker: BrokerProcess, tmp_path: Path, signing_key: Ed25519PrivateKey, model_v2: Path
) -> None:
    profile = two_model_profile(tmp_path, broker.port, signing_key.public_key())
    device = TwoModelDevice(profile)
    fleet = start_fleet(broker.port, signing_key, tmp_path / "fleet")
    try:
        wait_until(lambda: len(fleet.board.model_statuses()) == 2, what="a status per model")
        manifest, _ = build_manifest(model_v2, fleet=FLEET, target="device:d1", name="ghost")
        signed = manifest.model_copy(update={"issued_at": time.time()}).signed(fleet.key)
        fleet.publish_retained(Topics(FLEET).manifest_device(SEG, "d1"), signed.model_dump_json().encode())
        wait_until(lambda: fleet.board.statuses(SEG)["d1"].refused_manifests == 1, what="refusal")
        st = fleet.board.statuses(SEG)["d1"]
        assert st.last_refusal == "manifest is for model 'ghost'; this device serves digits-edge, seg"
        assert st.state == "active" and st.push_id is None and device.version(SEG) == "1.0.0"
    finally:
        device.stop()
        fleet.connection.stop()


def test_each_models_health_limits_and_signals(tmp_path: Path, signing_key: Ed25519PrivateKey) -> None:
    profile = two_model_profile(tmp_path, 1883, signing_key.public_key())
    classifier, seg = profile.model_entries()
    own = health_monitor(profile, seg, "tensor")
    errors = own.watches[0]
    assert isinstance(errors, ErrorRateWatch) and (errors.max_rate, errors.min_requests) == (0.2, 5)
    assert [type(w).__name__ for w in own.watches] == ["ErrorRateWatch", "RunLatencyWatch"]
    default = health_monitor(profile, classifier, "classification")
    assert (default.watches[0].max_rate, default.watches[0].min_requests) == (0.9, 100_000)  # type: ignore[attr-defined]
    assert len(default.watches) == 5


def test_the_daemon_updates_its_second_model_and_reports_each_version(
    broker: BrokerProcess, tmp_path: Path, signing_key: Ed25519PrivateKey
) -> None:
    """`edgecascade agent run` with two models: a push for the tensor model swaps it in the
    running daemon, /v2 and /metrics show each model's own version, the classifier stays."""
    import requests

    from edgecascade.tools.mqtt_broker import free_port
    from tests.edge.daemon.support import DaemonProcess

    home = tmp_path / "dev"
    seg = segmenter(home / "seg.onnx", "1.0.0")
    api_port = free_port()
    profile = tmp_path / "two.toml"
    profile.write_text(
        f'profile = "t"\ndevice_id = "d1"\nfleet = "{FLEET}"\ndata_dir = "{home / "data"}"\n'
        "memory_budget_mb = 400\n"
        f'[[models]]\nname = "{CLASSIFIER}"\npath = "{MODELS / "digits_edge_int8.tflite"}"\n'
        f'[[models]]\nname = "{SEG}"\npath = "{seg}"\n'
        f"[api]\nport = {api_port}\n[mqtt]\nenabled = true\nport = {broker.port}\n"
        f'[updates]\nenabled = true\npublic_key = "{public_key_b64(signing_key.public_key())}"\n'
        "watch_window_s = 0\ncheck_timeout_s = 30\n"
    )
    daemon = DaemonProcess(profile, api_port, tmp_path / "d.log").start()
    fleet = start_fleet(broker.port, signing_key, tmp_path / "fleet")
    frame = np.random.default_rng(5).random((1, 6, 5, 3), dtype=np.float32)
    body = {
        "inputs": [
            {"name": "image", "datatype": "FP32", "shape": [1, 6, 5, 3], "data": frame.ravel().tolist()}
        ]
    }

    def served(model: str) -> str:
        return str(requests.get(f"{daemon.url}/v2/models/{model}", timeout=5).json()["versions"][0])

    try:
        wait_until(lambda: len(fleet.board.model_statuses()) == 2, what="a status per model")
        candidate = segmenter(tmp_path / "seg-1.1" / "seg.onnx", "1.1.0")
        manifest, payloads = build_manifest(candidate, fleet=FLEET, target="all", chunk_size=4096)
        signed, sent = fleet.push(manifest, payloads)
        assert sent == ["d1"]  # the devices serving seg
        assert fleet.board.wait_for(signed.push_id, sent, 60, model=SEG)["d1"].state == "active"
        reply = requests.post(f"{daemon.url}/v2/models/{SEG}/infer", json=body, timeout=10)
        assert reply.status_code == 200 and reply.json()["model_version"] == "1.1.0", reply.text
        assert served(CLASSIFIER) == "1.0.0"
        text = requests.get(f"{daemon.url}/metrics", timeout=5).text
        labels = [
            dict(kv.split("=") for kv in line.split("{")[1].split("}")[0].split(","))
            for line in text.splitlines()
            if line.startswith("edgecascade_model_info{")
        ]
        assert {d["name"]: d["version"] for d in labels} == {'"digits-edge"': '"1.0.0"', '"seg"': '"1.1.0"'}
        assert fleet.board.statuses(CLASSIFIER)["d1"].state == "active"
    finally:
        fleet.connection.stop()
        daemon.stop()
    assert "Traceback" not in daemon.log.read_text()


def test_a_tensor_models_latency_is_judged_from_its_own_calls(
    tmp_path: Path, signing_key: Ed25519PrivateKey
) -> None:
    """RunLatencyWatch: the previous version's median call time is the baseline; the new one's
    calls past the manifest's max_latency_ratio ask for a rollback, failed calls do not count."""
    from edgecascade.edge.answer import ModelRef
    from edgecascade.shared.manifest import HealthLimits

    profile = two_model_profile(tmp_path, 1883, signing_key.public_key())
    health = health_monitor(profile, profile.model_entries()[1], "tensor")
    manifest, _ = build_manifest(segmenter(tmp_path / "s" / "seg.onnx", "1.1.0"), fleet=FLEET, target="all")
    manifest = manifest.model_copy(update={"health": HealthLimits(max_latency_ratio=2.0, min_requests=10)})
    for _ in range(20):
        health.observe_run(ModelRef(SEG, "1.0.0"), 1.0, None)
    health.begin(manifest)
    for _ in range(9):
        health.observe_run(ModelRef(SEG, "1.1.0"), 5.0, None)
    health.observe_run(ModelRef(SEG, "1.1.0"), 50.0, RuntimeError("failed call"))
    assert health.verdict() is None  # 9 timed calls: not enough evidence yet
    health.observe_run(ModelRef(SEG, "1.1.0"), 5.0, None)
    assert health.verdict() == "median latency 5.000 ms vs 1.000 ms before (limit x2)"
    assert health.figures()["latency_ms"].samples == 10
