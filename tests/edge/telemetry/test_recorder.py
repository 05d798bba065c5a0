"""The recorder with a real agent on the demo model: what each answer turns into."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgecascade.edge import telemetry as edge_telemetry
from edgecascade.edge.agent import Agent
from edgecascade.edge.config import load_profile
from edgecascade.edge.telemetry.buffer import TelemetryBuffer
from edgecascade.shared.telemetry import BODY_MODELS, RecordKind
from tests.cloud.ingest.support import write_profile
from tests.conftest import REPO


def _agent(tmp_path: Path, **telemetry: object) -> tuple[Agent, edge_telemetry.TelemetryParts]:
    profile = load_profile(
        write_profile(tmp_path / "dev.toml", device="dev-r", port=1, mqtt=False, **telemetry)
    )
    agent = Agent.from_profile(profile)
    parts = edge_telemetry.build(profile, None)
    agent.cascade.observers.append(parts.observer)
    return agent, parts


def _bodies(buffer: TelemetryBuffer, kind: str) -> list[dict]:  # type: ignore[type-arg]
    return [json.loads(r.body) for r in buffer.peek(100_000) if r.kind == kind]


def test_every_answer_becomes_a_valid_record_and_metrics_count_all(tmp_path, digits_split) -> None:  # type: ignore[no-untyped-def]
    agent, parts = _agent(tmp_path)
    assert parts.recorder is not None and parts.buffer is not None and parts.sink is None
    features = digits_split[1].features
    start = parts.buffer.last_seq
    answers = [agent.predict(features[i], request_id=f"r{i}") for i in range(120)]
    assert parts.recorder.emit_metrics() == start + 121
    records = _bodies(parts.buffer, "inference")
    assert len(records) == 120
    for body in records:
        BODY_MODELS[RecordKind.INFERENCE].model_validate(body)  # the schema the cloud checks
        assert "features" not in body  # no input data by default
    assert [b["label"] for b in records] == [a.label for a in answers]
    metrics = _bodies(parts.buffer, "metrics")[0]
    assert metrics["requests"] == 120 and sum(metrics["latency_buckets"]) == 120
    assert metrics["escalated"] == sum(a.escalated for a in answers)
    assert metrics["degraded"] == sum(a.degraded for a in answers)
    assert metrics["by_source"] == {"edge": 120}
    assert metrics["buffer_records"] == 120


def test_sampling_keeps_every_unusual_answer_and_metrics_still_see_everything(tmp_path, digits_split) -> None:  # type: ignore[no-untyped-def]
    agent, parts = _agent(tmp_path, inference_sample_rate=0.0)
    assert parts.recorder is not None and parts.buffer is not None
    answers = [agent.predict(f) for f in digits_split[1].features[:300]]
    parts.recorder.emit_metrics()
    unusual = sum(a.escalated or a.degraded for a in answers)
    assert unusual > 0  # offline device: hard cases come back degraded
    assert len(_bodies(parts.buffer, "inference")) == unusual
    assert parts.recorder.sampled_out == 300 - unusual
    assert _bodies(parts.buffer, "metrics")[0]["requests"] == 300


def test_hard_examples_are_opt_in_and_rate_capped(tmp_path, digits_split) -> None:  # type: ignore[no-untyped-def]
    features = digits_split[1].features[:300]
    (tmp_path / "off").mkdir()
    agent, parts = _agent(tmp_path / "off")
    for f in features:
        agent.predict(f)
    assert parts.recorder is not None and parts.buffer is not None
    parts.recorder.flush()
    assert _bodies(parts.buffer, "hard_case") == []
    (tmp_path / "on").mkdir()
    agent, parts = _agent(tmp_path / "on", hard_examples={"enabled": True, "max_per_minute": 5})
    assert parts.recorder is not None and parts.buffer is not None
    answers = [agent.predict(f) for f in features]
    parts.recorder.flush()
    hard = _bodies(parts.buffer, "hard_case")
    escalated = sum(a.escalated for a in answers)
    assert escalated > 5 and len(hard) == 5 and parts.recorder.hard_over_cap == escalated - 5
    assert len(hard[0]["features"]) == 64
    assert np.allclose(hard[0]["features"], features[[a.escalated for a in answers].index(True)])


def test_kill_9_loses_no_acknowledged_record(tmp_path) -> None:  # type: ignore[no-untyped-def]
    profile = write_profile(tmp_path / "dev.toml", device="dev-x", port=1, mqtt=False)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.edge.telemetry.soak_agent",
            "--config",
            str(profile),
            "--flush-every",
            "3",
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    start = acked = 0
    for line in proc.stdout:
        if line.startswith("START "):
            start = acked = int(line.split()[1])  # the buffer's sequence before the first record
        elif line.startswith("ACK "):
            acked = int(line.split()[1])
            if acked - start >= 900:
                break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    for line in proc.stdout:
        if line.startswith("ACK "):
            acked = int(line.split()[1])
    buffer = TelemetryBuffer(tmp_path / "dev-x-data" / "telemetry.sqlite3", max_bytes=10**8, max_age_s=1e9)
    seqs = buffer.seqs()
    assert acked - start >= 900
    assert seqs[: acked - start] == list(range(start + 1, acked + 1))  # every acknowledged record is there
    assert seqs == list(range(start + 1, buffer.last_seq + 1))  # and nothing half-written


def test_nan_never_enters_telemetry_and_the_refusal_is_counted(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A non-finite value (a NaN confidence, a NaN verdict score) is refused on the device by
    the same rules the ingester applies; the record is counted as an "invalid" drop, which the
    drops record carries to the cloud, and the agent goes on."""
    from edgecascade.edge.answer import Answer, ModelRef

    agent, parts = _agent(tmp_path)
    assert parts.recorder is not None and parts.buffer is not None
    ok = Answer("3", 3, 0.9, "edge", ModelRef("m", "1"), latency_ms=0.1, request_id="ok")
    nan = Answer("3", 3, float("nan"), "edge", ModelRef("m", "1"), latency_ms=0.1, request_id="nan")
    inf_latency = Answer("3", 3, 0.9, "edge", ModelRef("m", "1"), latency_ms=float("inf"), request_id="inf")
    for answer in (ok, nan, inf_latency):
        parts.observer(None, answer, None)  # type: ignore[arg-type]
    parts.recorder.record(RecordKind.EVENT, {"camera": "c1", "score": float("nan")})
    parts.recorder.record(RecordKind.EVENT, {"camera": "c1", "score": 0.5})
    parts.recorder.flush()
    assert [b["request_id"] for b in _bodies(parts.buffer, "inference")] == ["ok"]
    assert _bodies(parts.buffer, "event") == [{"camera": "c1", "score": 0.5}]
    assert parts.recorder.invalid == 3
    assert parts.buffer.dropped() == {"inference": 2, "event": 1}
    (drops,) = _bodies(parts.buffer, "drops")
    assert drops == {"total": 3, "by_kind": {"inference": 2, "event": 1}, "by_reason": {"invalid": 3}}
    parts.recorder.emit_metrics()  # the metrics record still counts every request, finite figures only
    (metrics,) = _bodies(parts.buffer, "metrics")
    assert metrics["requests"] == 3 and sum(metrics["latency_buckets"]) == 2
    for record in parts.buffer.peek(100):  # every record in the buffer is strict JSON
        json.loads(record.body, parse_constant=lambda name: pytest.fail(f"{name} in telemetry"))
    agent.close()


def test_an_unknown_sink_is_a_profile_error_naming_the_known_ones(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from edgecascade.edge.telemetry import SINKS
    from edgecascade.shared.errors import ConfigError

    assert "mqtt" in SINKS
    path = write_profile(tmp_path / "dev.toml", device="dev-s", port=1, sink="carrier-pigeon")
    with pytest.raises(ConfigError) as err:
        load_profile(path)
    assert "telemetry.sink" in str(err.value) and "['mqtt']" in str(err.value)


def test_a_full_disk_is_counted_and_logged_once_not_per_commit(tmp_path, digits_split, caplog) -> None:  # type: ignore[no-untyped-def]
    """Every commit fails while the buffer's file cannot grow (SQLite's own size limit gives
    the same SQLITE_FULL as a full SD card): the agent keeps answering, the loss is counted,
    the log has one line at the first failure and at every 100th, no traceback, and one when
    commits work again."""
    import logging

    agent, parts = _agent(tmp_path, flush_batch=1)
    assert parts.recorder is not None and parts.buffer is not None
    features = digits_split[1].features
    db = parts.buffer._db  # the buffer's own connection: the limit is per connection
    pages = db.execute("PRAGMA page_count").fetchone()[0]
    db.execute(f"PRAGMA max_page_count = {pages}")
    caplog.set_level(logging.INFO, logger="edgecascade.edge.telemetry.recorder")
    for i in range(150):
        agent.predict(features[i % 100], request_id=f"full-{i}")
        parts.recorder.flush()
    assert parts.recorder.write_failures >= 100 and parts.recorder.lost_on_failure >= 100
    failures = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(failures) == 2 and all(r.exc_info is None for r in failures)
    assert "database or disk is full" in failures[0].getMessage()
    db.execute(f"PRAGMA max_page_count = {pages * 1000}")
    agent.predict(features[0], request_id="room-again")
    parts.recorder.flush()
    assert any("committed again" in r.getMessage() for r in caplog.records)
    assert [b["request_id"] for b in _bodies(parts.buffer, "inference")][-1] == "room-again"
    agent.close()
