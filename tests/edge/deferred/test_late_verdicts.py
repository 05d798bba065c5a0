"""Deferred escalation end to end, in one process, with real parts: the real cloud API (stopped
and started on the same port), the int8 edge model in a real cascade, real Mosquitto and a
real subscriber, real telemetry buffer and answer cache."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgecascade.cloud.repository import seed_demo_repository
from edgecascade.edge.cascade import CascadeRequest
from edgecascade.shared.backends import load_backend
from edgecascade.shared.mqtt import Topics
from edgecascade.shared.telemetry import BODY_MODELS, RecordKind
from edgecascade.tools.mqtt_broker import BrokerProcess
from tests.conftest import MODELS
from tests.edge.deferred.support import (
    FLEET,
    Device,
    RecordingCloud,
    SwitchableCloud,
    VerdictSubscriber,
    edge_confidence,
    hard_rows,
    wait_for,
    write_profile,
)

INFERENCES = "edgecascade_cloud_inferences"


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return seed_demo_repository(tmp_path_factory.mktemp("repo") / "models", MODELS)


@pytest.fixture
def cloud(repository: Path, tmp_path: Path) -> Iterator[SwitchableCloud]:
    """The real cloud API, unreachable (connections reset) until a test calls `up()`."""
    switch = SwitchableCloud(repository, tmp_path / "cloud.log")
    yield switch
    switch.close()


@pytest.fixture(scope="module")
def cloud_labels(digits_split: tuple[Any, Any]) -> np.ndarray:
    probs = load_backend(MODELS / "digits_cloud.onnx").predict({"input": digits_split[1].features})
    return np.asarray(probs["probabilities"]).argmax(axis=1)


def easy_rows(features: np.ndarray, n: int) -> list[int]:
    return [int(i) for i in np.flatnonzero(edge_confidence(features) >= 0.95)[:n]]


def test_cloud_down_then_back_gives_exactly_one_verdict_per_queued_case(
    tmp_path: Path, cloud: SwitchableCloud, broker: BrokerProcess, digits_split, cloud_labels: np.ndarray
) -> None:
    features = digits_split[1].features
    rows = hard_rows(features, 12)
    device = Device(
        write_profile(tmp_path / "d.toml", device="d1", cloud_url=cloud.url, mqtt_port=broker.port)
    )
    subscriber = VerdictSubscriber(broker.port, Topics(FLEET).verdicts("d1"))
    device.start()
    try:
        answers = {f"h{i}": device.agent.predict(features[i], request_id=f"h{i}") for i in rows}
        easy = easy_rows(features, 5)
        for i in easy:  # confident answers are never queued
            assert not device.agent.predict(features[i], request_id=f"e{i}").degraded
        assert all(a.source == "edge" and a.degraded and a.escalated for a in answers.values())
        deferred = device.deferred
        queue = deferred.queue
        assert queue is not None and deferred.verdicts is not None
        expected_queued = len(rows)
        wait_for(lambda: queue.depth() == expected_queued, what="cases queued")
        time.sleep(0.4)  # the worker keeps probing a dead cloud: nothing is answered or lost
        assert queue.depth() == expected_queued and deferred.verdicts.count() == 0
        assert subscriber.counts() == {}

        cloud.up()
        wait_for(lambda: sum(subscriber.counts().values()) >= expected_queued, what="verdict events")
        time.sleep(0.5)  # long enough for a duplicate to show up, were there one
        counts = subscriber.counts()
        assert set(answers) <= set(counts) and len(counts) == expected_queued
        assert all(n == 1 for n in counts.values()), counts
        by_id = {m["request_id"]: m for m in subscriber.messages}
        for i in rows:
            rid = f"h{i}"
            event = by_id[rid]
            assert event["schema"] == 1 and event["edge_label"] == answers[rid].label
            assert event["edge_confidence"] == pytest.approx(answers[rid].confidence)
            assert event["cloud_label"] == str(cloud_labels[i])
            assert event["cloud_model"] == {"name": "digits-cloud", "version": "1.0.0"}
            assert event["agree"] == (event["edge_label"] == event["cloud_label"])
            assert event["queued_at"] <= event["answered_at"]
            assert deferred.verdicts.get(rid) == event  # the local API's view
        assert deferred.verdicts.get("never-asked") is None
        assert cloud.counter(INFERENCES) == expected_queued  # each computed once
        assert deferred.counters() == {
            "queued": 0,
            "sent": expected_queued,
            "verdicts": expected_queued,
            "pending_publish": 0,
            "dropped": 0,
        }
        # Telemetry: one verdict record per case, valid for the cloud's schema.
        assert device.telemetry.recorder is not None and device.telemetry.buffer is not None
        device.telemetry.recorder.flush()
        records = [
            json.loads(r.body) for r in device.telemetry.buffer.peek(100_000) if r.kind == RecordKind.VERDICT
        ]
        assert sorted(r["request_id"] for r in records) == sorted(counts)
        for body in records:
            BODY_MODELS[RecordKind.VERDICT].model_validate(body)
        # The cloud-answer cache learned the late answers: a repeat is answered from it.
        again = device.agent.predict(features[rows[0]], request_id="again")
        assert again.source == "cache" and again.label == str(cloud_labels[rows[0]])
    finally:
        device.stop()
        subscriber.close()


def test_budget_refused_cases_are_queued_and_answered_late(
    tmp_path: Path, cloud: SwitchableCloud, digits_split, cloud_labels: np.ndarray
) -> None:
    features = digits_split[1].features
    rows = hard_rows(features, 6)
    cloud.up()
    profile = write_profile(
        tmp_path / "b.toml",
        device="b1",
        cloud_url=cloud.url,
        mqtt_port=None,
        cascade={"max_escalations_per_minute": 1},
    )
    device = Device(profile).start()
    try:
        answers = [device.agent.predict(features[i], request_id=f"b{i}") for i in rows]
        assert answers[0].source == "cloud" and not answers[0].degraded  # the budget's one
        refused = answers[1:]
        assert all("over escalation rate" in a.reason and a.degraded for a in refused)
        verdicts = device.deferred.verdicts
        assert verdicts is not None
        wait_for(lambda: verdicts.count() == len(refused), what="late verdicts")
        for i in rows[1:]:
            verdict = verdicts.get(f"b{i}")
            assert verdict is not None and verdict["cloud_label"] == str(cloud_labels[i])
        assert verdicts.get(f"b{rows[0]}") is None  # answered by the cloud at once: no late verdict
        assert cloud.counter(INFERENCES) == len(rows)
        counters = device.deferred.counters()
        assert counters["verdicts"] == len(refused) and counters["pending_publish"] == 0  # no MQTT
    finally:
        device.stop()


def test_rate_limit_and_most_uncertain_first(tmp_path: Path, cloud: SwitchableCloud, digits_split) -> None:
    features = digits_split[1].features
    rows = hard_rows(features, 8)
    rate = 8.0
    profile = write_profile(
        tmp_path / "r.toml",
        device="r1",
        cloud_url=cloud.url,
        mqtt_port=None,
        deferred={"rate_per_s": rate, "order": "most_uncertain"},
    )
    from edgecascade.edge.agent import build_cloud_client
    from edgecascade.edge.config import load_profile

    sends = RecordingCloud(build_cloud_client(load_profile(profile)))
    device = Device(profile, worker_cloud=sends)
    recorder, worker = device.deferred.recorder, device.deferred.worker
    assert recorder is not None and worker is not None
    try:
        answers = {f"r{i}": device.agent.predict(features[i], request_id=f"r{i}") for i in rows}  # cloud down
        assert recorder.flush() == len(rows)
        cloud.up()
        worker.start()
        verdicts = device.deferred.verdicts
        assert verdicts is not None
        wait_for(lambda: verdicts.count() == len(rows), what="late verdicts")
        starts = [t for t, _ in sends.calls]
        assert len(starts) == len(rows)  # cloud up: one call per case
        gaps = np.diff(starts)
        assert gaps.min() >= 1.0 / rate - 0.002, gaps  # at most `rate` sends a second
        # Least confident first.
        order = [answers[rid].confidence for _, rid in sends.calls]
        assert order == sorted(order)
    finally:
        device.stop()
        sends.close()


def test_verdicts_wait_for_the_broker_and_are_published_once(
    tmp_path: Path, cloud: SwitchableCloud, broker: BrokerProcess, digits_split
) -> None:
    features = digits_split[1].features
    rows = hard_rows(features, 5)
    device = Device(
        write_profile(tmp_path / "m.toml", device="m1", cloud_url=cloud.url, mqtt_port=broker.port)
    )
    subscriber = VerdictSubscriber(broker.port, Topics(FLEET).verdicts("m1"))
    device.start()
    try:
        for i in rows:
            assert device.agent.predict(features[i], request_id=f"m{i}").degraded
        verdicts = device.deferred.verdicts
        assert verdicts is not None and device.connection is not None
        wait_for(lambda: device.deferred.counters()["queued"] == len(rows), what="queued")
        subscriber.close()
        broker.stop()
        wait_for(lambda: not device.connection.connected.is_set(), what="disconnect")  # type: ignore[union-attr]
        cloud.up()
        wait_for(lambda: verdicts.count() == len(rows), what="verdicts stored")
        assert verdicts.pending_publish() == len(rows)  # nothing published, nothing lost
        broker.start()
        subscriber = VerdictSubscriber(broker.port, Topics(FLEET).verdicts("m1"))
        wait_for(lambda: verdicts.pending_publish() == 0, what="verdicts published")
        wait_for(lambda: len(subscriber.counts()) == len(rows), what="events received")
        time.sleep(0.3)
        assert subscriber.counts() == {f"m{i}": 1 for i in rows}
    finally:
        device.stop()
        subscriber.close()


def test_observer_ignores_answers_that_need_no_deferral(
    tmp_path: Path, cloud: SwitchableCloud, digits_split
) -> None:
    cloud.up()
    device = Device(write_profile(tmp_path / "o.toml", device="o1", cloud_url=cloud.url, mqtt_port=None))
    try:
        features = digits_split[1].features
        for i in range(60):  # cloud up: hard cases escalate fine, easy ones stay local
            device.agent.cascade.answer(CascadeRequest(features[i], request_id=f"o{i}"))
        recorder = device.deferred.recorder
        assert recorder is not None and recorder.seen == 0 and recorder.flush() == 0
    finally:
        device.stop()
