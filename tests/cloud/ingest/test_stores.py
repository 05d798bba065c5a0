"""Both stores, real: SQLite in tmp_path and the machine's PostgreSQL (database `test`)."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest

from edgecascade.cli import main
from edgecascade.cloud.ingest.sqlite_store import SqliteStore
from edgecascade.cloud.ingest.store import StoreResult, TelemetryStore
from edgecascade.shared.telemetry import RecordKind, decode_batch, encode_batch


def _inference(escalated: bool) -> str:
    return json.dumps(
        {"model": "m", "model_version": "1", "source": "cloud" if escalated else "edge", "confidence": 0.9,
         "label": "3", "latency_ms": 1.0, "escalated": escalated, "degraded": False, "reason": "r"}
    )  # fmt: skip


def _metrics(requests: int, escalated: int, p50: float, dropped: int) -> str:
    return json.dumps(
        {"start": 0, "end": 60, "requests": requests, "by_source": {"edge": requests}, "escalated": escalated,
         "degraded": 0, "latency_p50_ms": p50, "latency_p99_ms": p50 * 3, "latency_buckets": [requests],
         "buffer_records": 0, "buffer_bytes": 0, "dropped_total": dropped}
    )  # fmt: skip


def test_duplicates_are_stored_once_and_summaries_add_up(store: TelemetryStore) -> None:
    rows = [(i, 100.0 + i, "inference", _inference(i % 4 == 0)) for i in range(1, 101)]
    first = decode_batch(encode_batch("dev-a", rows[:60]))
    assert store.store(first, 1000.0) == StoreResult(60, 0, 0)
    assert store.store(first, 1001.0) == StoreResult(0, 60, 0)  # redelivered: nothing new
    overlap = decode_batch(encode_batch("dev-a", rows[50:]))
    assert store.store(overlap, 1002.0) == StoreResult(40, 10, 0)
    assert store.store(decode_batch(encode_batch("dev-b", rows[:5])), 1003.0).stored == 5
    assert store.count() == 105 and store.count("dev-a") == 100
    assert store.seqs("dev-a") == list(range(1, 101))
    metrics = [
        (101, 200.0, "metrics", _metrics(80, 20, 0.5, 0)),
        (102, 260.0, "metrics", _metrics(20, 10, 0.7, 3)),
    ]
    drops = [
        (103, 261.0, "drops", json.dumps({"total": 7, "by_kind": {"inference": 7}, "by_reason": {"size": 7}}))
    ]
    assert store.store(decode_batch(encode_batch("dev-a", metrics + drops)), 1004.0).stored == 3
    assert store.bodies("dev-a", RecordKind.DROPS)[0]["total"] == 7
    a, b = store.summaries()
    assert (a.device, a.records, a.requests, a.escalated, a.dropped) == ("dev-a", 103, 100, 30, 7)
    assert a.escalation_rate == pytest.approx(0.3)
    assert (a.latency_p50_ms, a.latency_p99_ms) == (0.7, pytest.approx(2.1))  # the latest interval
    assert a.last_seen == 1004.0
    assert (b.device, b.records, b.requests, b.escalation_rate, b.latency_p50_ms) == (
        "dev-b",
        5,
        0,
        None,
        None,
    )


def test_fleet_telemetry_command_shows_each_device(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    db = tmp_path / "t.sqlite3"
    store = SqliteStore(db)
    store.store(decode_batch(encode_batch("dev-z", [(1, 1.0, "metrics", _metrics(50, 5, 0.4, 2))])), 10.0)
    store.close()
    assert main(["fleet", "telemetry", "--store", str(db), "--json"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["device"] == "dev-z" and row["requests"] == 50 and row["escalation_rate"] == 0.1
    assert row["dropped"] == 2
    assert main(["fleet", "telemetry", "--store", str(db)]) == 0
    assert "dev-z" in capsys.readouterr().out


def test_postgres_store_reconnects_after_losing_its_connection(store: TelemetryStore) -> None:
    """A restarted PostgreSQL (here: our backend terminated) costs one failed attempt, which the
    ingester retries; the next call opens a new connection."""
    from edgecascade.cloud.ingest.postgres_store import PostgresStore
    from edgecascade.shared.errors import StorageError

    if not isinstance(store, PostgresStore):
        pytest.skip("PostgreSQL only")
    batch = decode_batch(encode_batch("dev-r", [(1, 1.0, "inference", _inference(False))]))
    assert store.store(batch, 1.0).stored == 1
    pid = store._db.info.backend_pid
    with psycopg.connect(store.url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    again = decode_batch(encode_batch("dev-r", [(2, 1.0, "inference", _inference(False))]))
    with pytest.raises(StorageError):
        store.store(again, 2.0)
    assert store.store(again, 2.0).stored == 1
    assert store.seqs("dev-r") == [1, 2]
