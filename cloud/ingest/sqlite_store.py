"""The embedded default store: one SQLite file in WAL mode, opened by the shared
corruption-safe opener with synchronous=FULL, because the ingester's acknowledgement lets
the device delete what it sent: a stored batch must survive a power cut of this machine too."""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

from edgecascade.cloud.ingest.store import (
    COLUMNS,
    DEAD_COUNTS_SQL,
    DEAD_LETTER_COLUMNS,
    LATEST_METRICS_SQL,
    MODEL_COUNTS_SQL,
    SUMMARY_SQL,
    DeadLetter,
    DeviceSummary,
    ModelCount,
    StoreResult,
    dead_letters_from,
    dead_row_of_record,
    model_counts_from,
    shape,
    summaries_from,
)
from edgecascade.shared.errors import StorageError
from edgecascade.shared.sqlite_file import open_checked
from edgecascade.shared.telemetry import RecordKind, TelemetryBatch

_SCHEMA = """
CREATE TABLE IF NOT EXISTS telemetry (
    device TEXT NOT NULL, seq INTEGER NOT NULL, ts REAL NOT NULL, kind TEXT NOT NULL,
    body TEXT NOT NULL, received REAL NOT NULL,
    requests INTEGER, escalated INTEGER, degraded INTEGER,
    latency_p50_ms REAL, latency_p99_ms REAL, dropped_total INTEGER, model TEXT,
    PRIMARY KEY (device, seq)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS dead_letters (
    device TEXT NOT NULL, seq INTEGER, kind TEXT, reason TEXT NOT NULL, record TEXT NOT NULL,
    received REAL NOT NULL);
CREATE UNIQUE INDEX IF NOT EXISTS dead_letters_key ON dead_letters (device, seq);
"""


def _init_schema(db: sqlite3.Connection) -> None:
    db.executescript(_SCHEMA)
    # A store made before records named their model gets the column (NULL in its old rows).
    if "model" not in {row[1] for row in db.execute("PRAGMA table_info(telemetry)")}:
        db.execute("ALTER TABLE telemetry ADD COLUMN model TEXT")


# ON CONFLICT names the key: only a redelivered record is skipped. (INSERT OR IGNORE would
# also skip a NOT NULL violation and count a bad record as a duplicate, silently.)
_INSERT = (
    f"INSERT INTO telemetry ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))}) "
    "ON CONFLICT (device, seq) DO NOTHING"
)
_INSERT_DEAD = (
    f"INSERT INTO dead_letters ({', '.join(DEAD_LETTER_COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(DEAD_LETTER_COLUMNS))}) ON CONFLICT (device, seq) DO NOTHING"
)
#: What a single row can fail with (its values, not the database): it becomes a dead letter.
_ROW_ERRORS = (sqlite3.IntegrityError, sqlite3.DataError, OverflowError, ValueError)


class SqliteStore:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._db = open_checked(self.path, _init_schema, synchronous="full")

    def store(self, batch: TelemetryBatch, received: float) -> StoreResult:
        with self._lock:
            try:
                return self._store(batch, received)
            except sqlite3.Error as exc:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise StorageError(f"telemetry store {self.path}: {exc}") from exc

    def _store(self, batch: TelemetryBatch, received: float) -> StoreResult:
        db = self._db
        pairs, dead_rows, reasons = shape(batch, received)
        db.execute("BEGIN IMMEDIATE")
        # total_changes is not undone by ROLLBACK TO: count only what was kept.
        before = db.total_changes
        db.execute("SAVEPOINT batch")
        try:
            db.executemany(_INSERT, [row for _, row in pairs])
            stored = db.total_changes - before
            db.execute("RELEASE batch")
        except _ROW_ERRORS:
            # Some row is unstorable: redo them one by one and dead-letter the ones that fail.
            db.execute("ROLLBACK TO batch")
            db.execute("RELEASE batch")
            stored = 0
            for record, row in pairs:
                try:
                    before = db.total_changes
                    db.execute(_INSERT, row)  # one statement: atomic on its own
                    stored += db.total_changes - before
                except _ROW_ERRORS as exc:
                    reasons.append(f"refused by SQLite: {exc}")
                    dead_rows.append(dead_row_of_record(batch.device, record, reasons[-1], received))
        before = db.total_changes
        if dead_rows:
            db.executemany(_INSERT_DEAD, dead_rows)
        dead = db.total_changes - before
        db.execute("COMMIT")
        total = len(batch.records) + len(batch.rejected)
        return StoreResult(stored, total - stored - dead, dead, tuple(reasons) if dead else ())

    def _query(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                return self._db.execute(sql, args).fetchall()
            except sqlite3.Error as exc:
                raise StorageError(f"telemetry store {self.path}: {exc}") from exc

    def count(self, device: str | None = None) -> int:
        if device is None:
            return int(self._query("SELECT COUNT(*) FROM telemetry")[0][0])
        return int(self._query("SELECT COUNT(*) FROM telemetry WHERE device = ?", (device,))[0][0])

    def seqs(self, device: str) -> list[int]:
        return [
            r[0] for r in self._query("SELECT seq FROM telemetry WHERE device = ? ORDER BY seq", (device,))
        ]

    def bodies(self, device: str, kind: RecordKind) -> list[dict[str, Any]]:
        rows = self._query(
            "SELECT body FROM telemetry WHERE device = ? AND kind = ? ORDER BY seq", (device, kind.value)
        )
        return [json.loads(r[0]) for r in rows]

    def dead_letters(self, device: str | None = None, limit: int = 100) -> list[DeadLetter]:
        cols = ", ".join(DEAD_LETTER_COLUMNS)
        if device is None:
            rows = self._query(f"SELECT {cols} FROM dead_letters ORDER BY rowid DESC LIMIT ?", (limit,))
        else:
            rows = self._query(
                f"SELECT {cols} FROM dead_letters WHERE device = ? ORDER BY rowid DESC LIMIT ?",
                (device, limit),
            )
        return dead_letters_from(rows)

    def summaries(self) -> list[DeviceSummary]:
        return summaries_from(
            self._query(SUMMARY_SQL), self._query(LATEST_METRICS_SQL), self._query(DEAD_COUNTS_SQL)
        )

    def model_counts(self, device: str | None = None) -> list[ModelCount]:
        sql = MODEL_COUNTS_SQL.format(
            escalated="json_extract(body, '$.escalated')",
            degraded="json_extract(body, '$.degraded')",
            where="" if device is None else "AND device = ?",
        )
        return model_counts_from(self._query(sql, () if device is None else (device,)))

    def close(self) -> None:
        with self._lock:
            self._db.close()
