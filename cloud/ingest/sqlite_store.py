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
    DEAD_LETTER_INSERT_COLUMNS,
    SqlReads,
    StoreResult,
    dead_row_of_record,
    shape,
)
from edgecascade.shared.errors import StorageError
from edgecascade.shared.sqlite_file import open_checked
from edgecascade.shared.telemetry import TelemetryBatch

_SCHEMA = """
CREATE TABLE IF NOT EXISTS telemetry (
    device TEXT NOT NULL, seq INTEGER NOT NULL, ts REAL NOT NULL, kind TEXT NOT NULL,
    body TEXT NOT NULL, received REAL NOT NULL,
    requests INTEGER, escalated INTEGER, degraded INTEGER,
    latency_p50_ms REAL, latency_p99_ms REAL, dropped_total INTEGER, model TEXT,
    PRIMARY KEY (device, seq)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS dead_letters (
    device TEXT NOT NULL, seq INTEGER, kind TEXT, reason TEXT NOT NULL, record TEXT NOT NULL,
    received REAL NOT NULL, dedupe_key TEXT);
"""
#: Columns a store made by an older version lacks (NULL in its old rows): records naming
#: their model, and dead letters' identity (see _INSERT_DEAD).
_ADDED_COLUMNS = (("telemetry", "model"), ("dead_letters", "dedupe_key"))
#: Once the columns exist. The old unique (device, seq) index goes: it let a dead letter
#: without a sequence number repeat (NULLs never collide) and dropped a second, different
#: record naming the same one; dedupe_key is the identity now.
_INDEXES = """
DROP INDEX IF EXISTS dead_letters_key;
CREATE UNIQUE INDEX IF NOT EXISTS dead_letters_dedupe ON dead_letters (dedupe_key);
CREATE INDEX IF NOT EXISTS dead_letters_device ON dead_letters (device, seq);
"""


def _missing_columns(db: sqlite3.Connection) -> list[tuple[str, str]]:
    have = {t: {row[1] for row in db.execute(f"PRAGMA table_info({t})")} for t, _ in _ADDED_COLUMNS}
    return [(t, c) for t, c in _ADDED_COLUMNS if c not in have[t]]


def _init_schema(db: sqlite3.Connection) -> None:
    db.executescript(_SCHEMA)  # takes no lock when the tables are there: readers open freely
    if _missing_columns(db):
        # Asked again under the write lock: another ingester may be upgrading the same file.
        # On an error the opener closes the connection, which rolls this back.
        db.execute("BEGIN IMMEDIATE")
        for table, column in _missing_columns(db):
            db.execute(f"ALTER TABLE {table} ADD COLUMN {column} TEXT")
        db.execute("COMMIT")
    db.executescript(_INDEXES)


# ON CONFLICT names the key: only a redelivered record is skipped. (INSERT OR IGNORE would
# also skip a NOT NULL violation and count a bad record as a duplicate, silently.)
_INSERT = (
    f"INSERT INTO telemetry ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))}) "
    "ON CONFLICT (device, seq) DO NOTHING"
)
# A row from before dedupe_key (NULL there) was unique on (device, seq): a dead letter naming
# a sequence number such a row holds is that row again, as the old index had it. The last two
# parameters are the row's device and seq once more.
_INSERT_DEAD = (
    f"INSERT INTO dead_letters ({', '.join(DEAD_LETTER_INSERT_COLUMNS)}) "
    f"SELECT {', '.join('?' * len(DEAD_LETTER_INSERT_COLUMNS))} WHERE NOT EXISTS "
    "(SELECT 1 FROM dead_letters WHERE dedupe_key IS NULL AND device = ? AND seq = ?) "
    "ON CONFLICT (dedupe_key) DO NOTHING"
)
#: What a single row can fail with (its values, not the database): it becomes a dead letter.
_ROW_ERRORS = (sqlite3.IntegrityError, sqlite3.DataError, OverflowError, ValueError)


class SqliteStore(SqlReads):
    PARAM = "?"
    DEAD_ORDER = "rowid"

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
        pairs, dead_rows, reasons, keys = shape(batch, received)
        db.execute("BEGIN IMMEDIATE")
        # total_changes is not undone by ROLLBACK TO: count only what was kept.
        before = db.total_changes
        db.execute("SAVEPOINT batch")
        try:
            db.executemany(_INSERT, [row for _, _, row in pairs])
            stored = db.total_changes - before
            db.execute("RELEASE batch")
        except _ROW_ERRORS:
            # Some row is unstorable: redo them one by one and dead-letter the ones that fail.
            db.execute("ROLLBACK TO batch")
            db.execute("RELEASE batch")
            stored = 0
            for position, record, row in pairs:
                try:
                    before = db.total_changes
                    db.execute(_INSERT, row)  # one statement: atomic on its own
                    stored += db.total_changes - before
                except _ROW_ERRORS as exc:
                    reasons.append(f"refused by SQLite: {exc}")
                    dead_rows.append(
                        dead_row_of_record(batch.device, record, reasons[-1], received, keys, position)
                    )
        before = db.total_changes
        if dead_rows:
            db.executemany(_INSERT_DEAD, [(*row, row[0], row[1]) for row in dead_rows])
        dead = db.total_changes - before
        db.execute("COMMIT")
        total = len(batch.records) + len(batch.rejected)
        return StoreResult(stored, total - stored - dead, dead, tuple(reasons) if dead else ())

    def _body(self, stored: Any) -> dict[str, Any]:
        return dict(json.loads(stored))  # bodies are stored as JSON text

    def _flag(self, name: str) -> str:
        return f"json_extract(body, '$.{name}')"

    def _query(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                return self._db.execute(sql, args).fetchall()
            except sqlite3.Error as exc:
                raise StorageError(f"telemetry store {self.path}: {exc}") from exc
