"""Both stores, real: SQLite in tmp_path and the machine's PostgreSQL (database `test`)."""

from __future__ import annotations

import contextlib
import json
import sqlite3
from pathlib import Path

import psycopg
import pytest

from edgecascade.cli import main
from edgecascade.cloud.ingest.sqlite_store import SqliteStore
from edgecascade.cloud.ingest.store import StoreResult, TelemetryStore
from edgecascade.shared.telemetry import RecordKind, TelemetryBatch, decode_batch, encode_batch


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


#: The dead-letter table as stores made it before dead letters had an identity (the telemetry
#: table is unchanged): unique on (device, seq), which NULL sequence numbers never hit.
_OLD_DEAD_LETTERS = {
    "sqlite": """CREATE TABLE dead_letters (
        device TEXT NOT NULL, seq INTEGER, kind TEXT, reason TEXT NOT NULL, record TEXT NOT NULL,
        received REAL NOT NULL)""",
    "postgres": """CREATE TABLE dead_letters (
        id BIGSERIAL PRIMARY KEY, device TEXT NOT NULL, seq BIGINT, kind TEXT, reason TEXT NOT NULL,
        record TEXT NOT NULL, received DOUBLE PRECISION NOT NULL)""",
}
_OLD_KEY = "CREATE UNIQUE INDEX dead_letters_key ON dead_letters (device, seq)"


def _reopen(store: TelemetryStore) -> TelemetryStore:
    """Another store of the same kind on the same tables (the ingester started again)."""
    from edgecascade.cloud.ingest.postgres_store import PostgresStore

    store.close()
    if isinstance(store, SqliteStore):
        return SqliteStore(store.path)
    assert isinstance(store, PostgresStore)
    return PostgresStore(store.url, table_schema=store.table_schema)


def _downgrade(store: TelemetryStore, rows: list[tuple[object, ...]]) -> None:
    """Replace the store's dead-letter table by one of the old layout holding `rows`."""
    from edgecascade.cloud.ingest.postgres_store import PostgresStore

    insert = "INSERT INTO dead_letters (device, seq, kind, reason, record, received) VALUES "
    if isinstance(store, SqliteStore):
        with contextlib.closing(sqlite3.connect(store.path, isolation_level=None)) as db:
            db.executescript(f"DROP TABLE dead_letters; {_OLD_DEAD_LETTERS['sqlite']}; {_OLD_KEY};")
            db.executemany(insert + "(?, ?, ?, ?, ?, ?)", rows)
        return
    assert isinstance(store, PostgresStore)
    with psycopg.connect(store.url, autocommit=True) as pg:
        pg.execute(f'SET search_path TO "{store.table_schema}"')
        pg.execute(f"DROP TABLE dead_letters; {_OLD_DEAD_LETTERS['postgres']}; {_OLD_KEY};")
        pg.cursor().executemany(insert + "(%s, %s, %s, %s, %s, %s)", rows)


def _events(*seq_ts: tuple[object, object]) -> TelemetryBatch:
    records = [{"seq": seq, "ts": ts, "kind": "event", "body": {"camera": "c"}} for seq, ts in seq_ts]
    return decode_batch(json.dumps({"v": 1, "device": "dev-o", "records": records}).encode())


def test_a_store_from_before_dead_letter_identities_is_upgraded_and_keeps_its_rows(
    store: TelemetryStore,
) -> None:
    old = _events((1, 1.0), (2, "now"), (None, 1.0))
    store.store(old, 5.0)
    _downgrade(store, [("dev-o", r.seq, r.kind, r.reason, r.record, 5.0) for r in old.rejected])
    upgraded = _reopen(store)
    try:
        reasons = sorted(d.reason.split(":")[0] for d in upgraded.dead_letters("dev-o"))
        assert reasons == ["records.1.ts", "records.2.seq"] and upgraded.summaries()[0].dead_letters == 2
        # The batch redelivered across the upgrade: its dead letter with a sequence number is
        # found under the old key. The one without cannot be told from another record like it
        # (its old row has no identity), so it is added once more, and then never again.
        again = upgraded.store(old, 6.0)
        assert (again.stored, again.duplicates, again.dead_lettered) == (0, 2, 1)
        assert upgraded.store(old, 7.0).dead_lettered == 0
        # New dead letters are stored once, and two records naming one seq are both kept.
        new = _events((None, 2.0), (7, "now"))
        assert upgraded.store(new, 8.0).dead_lettered == 2 and upgraded.store(new, 9.0).dead_lettered == 0
        assert upgraded.store(_events((7, "later")), 10.0).dead_lettered == 1
        upgraded = _reopen(upgraded)  # a second start finds nothing left to upgrade
        assert len(upgraded.dead_letters("dev-o")) == 6 and upgraded.seqs("dev-o") == [1]
    finally:
        upgraded.close()
