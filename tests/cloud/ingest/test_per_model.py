"""Per-model telemetry end to end: a device serving a classifier (the committed digits model),
a detector and a tensor model (real ONNX models built and imported here, as in
tests/edge/tasks), wired as the daemon wires it, a real broker, the real ingester and store.
Every per-request record arrives naming its served model and version."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgecascade.edge import telemetry as edge_telemetry
from edgecascade.edge.agent import Agent, ModelWiring
from edgecascade.edge.config.profile import DeviceProfile
from edgecascade.edge.tasks import TaskRequest
from edgecascade.shared.mqtt import MqttConnection, Topics
from edgecascade.shared.telemetry import RecordKind
from edgecascade.tools.model_import import ImportAnswers, import_model
from edgecascade.tools.mqtt_broker import BrokerProcess
from tests.cloud.ingest.support import FLEET, start_ingester, wait_for
from tests.conftest import MODELS
from tests.edge.tasks import onnx_models


def _profile(tmp_path: Path, port: int, detector: Path, tensor: Path) -> DeviceProfile:
    return DeviceProfile.model_validate(
        {
            "profile": "test",
            "device_id": "multi",
            "fleet": FLEET,
            "data_dir": str(tmp_path / "data"),
            "memory_budget_mb": 512,
            "runtime": {"warmup_runs": 0},
            "deferred": {"enabled": False},
            "mqtt": {"enabled": True, "port": port, "reconnect_max_s": 1.0},
            "telemetry": {"metrics_interval_s": 3600, "flush_interval_ms": 20, "ack_timeout_s": 1.0},
            "models": [
                {"name": "digits", "path": str(MODELS / "digits_edge_int8.onnx")},
                {"name": "det", "path": str(detector)},
                {"name": "energy", "path": str(tensor)},
            ],
        }
    )


def test_detector_and_tensor_records_reach_the_ingester_with_their_model(
    tmp_path: Path, broker: BrokerProcess, digits_split
) -> None:  # type: ignore[no-untyped-def]
    _, held = digits_split
    store_path = tmp_path / "cloud.sqlite3"
    ingester, ing_conn = start_ingester(broker.port, store_path)
    detector = onnx_models.detector(tmp_path / "det.onnx")
    import_model(
        detector, ImportAnswers(name="cam-detector", task="detection", labels=["person"])
    ).card.save_beside(detector)
    tensor = onnx_models.dynamic(tmp_path / "energy.onnx")
    import_model(tensor, ImportAnswers(name="energy", escalate="energy>0.2")).card.save_beside(tensor)
    profile = _profile(tmp_path, broker.port, detector, tensor)
    connection = MqttConnection(profile.mqtt.settings("multi", Topics(FLEET).presence("multi")))
    parts = edge_telemetry.build(profile, connection)

    def observers_for(model: ModelWiring):  # type: ignore[no-untyped-def]
        return [parts.observer_for(model.name, model.kind)]

    agent = Agent.from_profile(profile, observers_for=observers_for)
    for service in parts.services:
        service.start()
    assert connection.start(wait_s=5.0)
    image = np.random.default_rng(3).random((1, 8, 8, 3), dtype=np.float32)
    try:
        for i in range(3):
            agent.predict(held.features[i], request_id=f"c{i}")
        for i in range(2):
            agent.infer("det", TaskRequest({"image": image}, request_id=f"d{i}"))
        agent.infer("energy", TaskRequest({"audio": np.full((1, 4), 0.1, dtype=np.float32)}, request_id="t0"))
        assert parts.recorder is not None
        parts.recorder.flush()
        wait_for(lambda: ingester.stored >= 6, what="6 records stored")
        counters = agent.counters()
    finally:
        for service in reversed(parts.services):
            service.stop(2.0)
        connection.stop()
        agent.close()
        ingester.stop()
        ing_conn.stop()
    store = ingester.store
    bodies = store.bodies("multi", RecordKind.INFERENCE)
    by_id = {b["request_id"]: b for b in bodies}
    assert {(b["served_model"], b["task"]) for b in bodies} == {
        ("digits", "classification"),
        ("det", "detection"),
        ("energy", "tensor"),
    }
    det_version = by_id["d0"]["served_model_version"]
    assert (
        det_version and by_id["d0"]["model"] == "cam-detector" and by_id["d0"]["model_version"] == det_version
    )
    assert by_id["t0"]["model"] == "energy" and by_id["t0"]["label"] == ""
    assert by_id["c0"]["served_model_version"] == by_id["c0"]["model_version"]
    counts = {c.model: c.records for c in store.model_counts("multi")}
    assert counts == {"det": 2, "digits": 3, "energy": 1}
    # Budget refusals are counted per model too.
    assert {"model_det_escalations_denied_by_budget", "model_energy_escalations_denied_by_budget"} <= set(
        counters
    )
    store.close()


def _inference(request_id: str, **extra: object) -> dict[str, object]:
    return {
        "model": "digits-edge",
        "model_version": "1",
        "source": "edge",
        "confidence": 0.9,
        "label": "3",
        "latency_ms": 0.2,
        "escalated": False,
        "degraded": False,
        "reason": "confident",
        "request_id": request_id,
        **extra,
    }


def test_a_store_from_before_per_model_records_gains_the_column_and_keeps_old_records(tmp_path: Path) -> None:
    """A store file as the ingester made it before records named their model, and a record
    from an agent of that time (no served_model): both stay valid; the model counts as None."""
    import json
    import sqlite3

    from edgecascade.cloud.ingest.sqlite_store import SqliteStore
    from edgecascade.shared.telemetry import decode_batch

    path = tmp_path / "old.sqlite3"
    old = sqlite3.connect(path)
    old.executescript(
        """CREATE TABLE telemetry (
            device TEXT NOT NULL, seq INTEGER NOT NULL, ts REAL NOT NULL, kind TEXT NOT NULL,
            body TEXT NOT NULL, received REAL NOT NULL,
            requests INTEGER, escalated INTEGER, degraded INTEGER,
            latency_p50_ms REAL, latency_p99_ms REAL, dropped_total INTEGER,
            PRIMARY KEY (device, seq)) WITHOUT ROWID;"""
    )
    old.execute(
        "INSERT INTO telemetry VALUES ('dev', 1, 1.0, 'inference', ?, 1.0, NULL, NULL, NULL, NULL, NULL, NULL)",
        (json.dumps(_inference("old")),),
    )
    old.commit()
    old.close()
    store = SqliteStore(path)
    try:
        records = [
            {"seq": 2, "ts": 2.0, "kind": "inference", "body": _inference("agent-before")},
            {
                "seq": 3,
                "ts": 3.0,
                "kind": "inference",
                "body": _inference("now", served_model="a", task="classification"),
            },
        ]
        batch = decode_batch(json.dumps({"v": 1, "device": "dev", "records": records}).encode())
        assert not batch.rejected
        assert store.store(batch, 4.0).stored == 2
        assert [(c.model, c.records) for c in store.model_counts()] == [(None, 2), ("a", 1)]
        assert store.count("dev") == 3
    finally:
        store.close()
