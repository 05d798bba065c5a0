"""PostgreSQL store (psycopg 3): one multi-row INSERT ... ON CONFLICT DO NOTHING per batch.

A batch whose insert fails on a value (psycopg's DataError or IntegrityError: a number out of
range, text jsonb refuses) is redone row by row under savepoints in the same transaction, and
the rows PostgreSQL refuses become dead letters. A lost connection is reopened on the next call."""

from __future__ import annotations

import threading
from typing import Any

import psycopg

from edgecascade.cloud.ingest.store import (
    COLUMNS,
    DEAD_LETTER_INSERT_COLUMNS,
    SqlReads,
    StoreResult,
    dead_row_of_record,
    shape,
)
from edgecascade.shared.errors import StorageError
from edgecascade.shared.telemetry import TelemetryBatch

# One implicit transaction (a multi-statement query), the first statement a lock: two
# ingesters connecting to an old database at once upgrade it one after the other.
_SCHEMA = """
SELECT pg_advisory_xact_lock(hashtext('edgecascade telemetry schema'));
CREATE TABLE IF NOT EXISTS telemetry (
    device TEXT NOT NULL, seq BIGINT NOT NULL, ts DOUBLE PRECISION NOT NULL, kind TEXT NOT NULL,
    body JSONB NOT NULL, received DOUBLE PRECISION NOT NULL,
    requests BIGINT, escalated BIGINT, degraded BIGINT,
    latency_p50_ms DOUBLE PRECISION, latency_p99_ms DOUBLE PRECISION, dropped_total BIGINT,
    model TEXT, PRIMARY KEY (device, seq));
-- A store made before records named their model gets the column (NULL in its old rows).
ALTER TABLE telemetry ADD COLUMN IF NOT EXISTS model TEXT;
CREATE TABLE IF NOT EXISTS dead_letters (
    id BIGSERIAL PRIMARY KEY, device TEXT NOT NULL, seq BIGINT, kind TEXT, reason TEXT NOT NULL,
    record TEXT NOT NULL, received DOUBLE PRECISION NOT NULL, dedupe_key TEXT);
-- One made before dead letters had an identity gets it (NULL in old rows: see _INSERT_DEAD),
-- and loses the unique (device, seq) index: it let a dead letter without a sequence number
-- repeat (NULLs never collide) and dropped a second, different record naming the same one.
ALTER TABLE dead_letters ADD COLUMN IF NOT EXISTS dedupe_key TEXT;
DROP INDEX IF EXISTS dead_letters_key;
CREATE UNIQUE INDEX IF NOT EXISTS dead_letters_dedupe ON dead_letters (dedupe_key);
CREATE INDEX IF NOT EXISTS dead_letters_device ON dead_letters (device, seq);
"""
_TYPES = ("text", "bigint", "float8", "text", "jsonb", "float8",
          "bigint", "bigint", "bigint", "float8", "float8", "bigint", "text")  # fmt: skip
# Columns as arrays, unnested server-side: one statement and one round trip per batch.
_INSERT_MANY = (
    f"INSERT INTO telemetry ({', '.join(COLUMNS)}) SELECT * FROM unnest("
    + ", ".join(f"%s::{t}[]" for t in _TYPES)
    + ") ON CONFLICT (device, seq) DO NOTHING"
)
_INSERT_ONE = (
    f"INSERT INTO telemetry ({', '.join(COLUMNS)}) VALUES ("
    + ", ".join(f"%s::{t}" for t in _TYPES)
    + ") ON CONFLICT (device, seq) DO NOTHING"
)
# A row from before dedupe_key (NULL there) was unique on (device, seq): a dead letter naming
# a sequence number such a row holds is that row again, as the old index had it. The last two
# parameters are the row's device and seq once more.
_INSERT_DEAD = (
    f"INSERT INTO dead_letters ({', '.join(DEAD_LETTER_INSERT_COLUMNS)}) "
    "SELECT %s::text, %s::bigint, %s::text, %s::text, %s::text, %s::float8, %s::text WHERE NOT EXISTS "
    "(SELECT 1 FROM dead_letters WHERE dedupe_key IS NULL AND device = %s::text AND seq = %s::bigint) "
    "ON CONFLICT (dedupe_key) DO NOTHING"
)
#: A row's values are at fault, not the database: that row becomes a dead letter.
_ROW_ERRORS = (psycopg.DataError, psycopg.IntegrityError, OverflowError, ValueError)


class PostgresStore(SqlReads):
    PARAM = "%s"
    DEAD_ORDER = "id"

    def __init__(self, url: str, *, table_schema: str | None = None) -> None:
        self.url = url
        self.table_schema = table_schema
        self._lock = threading.Lock()
        self._db = self._connect()

    def _connect(self) -> psycopg.Connection[Any]:
        try:
            db = psycopg.connect(self.url, autocommit=True, connect_timeout=10)
            if self.table_schema:
                db.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.table_schema}"')
                db.execute(f'SET search_path TO "{self.table_schema}"')
            db.execute(_SCHEMA)
        except psycopg.Error as exc:
            raise StorageError(f"PostgreSQL telemetry store unusable: {exc}") from exc
        return db

    def _conn(self) -> psycopg.Connection[Any]:
        if self._db.closed or self._db.broken:
            self._db = self._connect()
        return self._db

    def store(self, batch: TelemetryBatch, received: float) -> StoreResult:
        with self._lock:
            try:
                return self._store(self._conn(), batch, received)
            except psycopg.Error as exc:
                raise StorageError(f"PostgreSQL telemetry store: {exc}") from exc

    def _store(self, db: psycopg.Connection[Any], batch: TelemetryBatch, received: float) -> StoreResult:
        pairs, dead_rows, reasons, keys = shape(batch, received)
        with db.transaction():
            stored = 0
            try:
                with db.transaction():  # a savepoint
                    if pairs:
                        columns = [list(c) for c in zip(*(row for _, _, row in pairs), strict=True)]
                        stored = max(db.execute(_INSERT_MANY, columns).rowcount, 0)
            except _ROW_ERRORS:
                for position, record, row in pairs:
                    try:
                        with db.transaction():
                            stored += max(db.execute(_INSERT_ONE, row).rowcount, 0)
                    except _ROW_ERRORS as exc:
                        reasons.append(f"refused by PostgreSQL: {str(exc).splitlines()[0][:300]}")
                        dead_rows.append(
                            dead_row_of_record(batch.device, record, reasons[-1], received, keys, position)
                        )
            dead = 0
            for dead_one in dead_rows:
                dead += max(db.execute(_INSERT_DEAD, (*dead_one, dead_one[0], dead_one[1])).rowcount, 0)
        total = len(batch.records) + len(batch.rejected)
        return StoreResult(stored, total - stored - dead, dead, tuple(reasons) if dead else ())

    def _flag(self, name: str) -> str:
        return f"(body->>'{name}')::boolean::int"

    def _query(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                return self._conn().execute(sql, args).fetchall()
            except psycopg.Error as exc:
                raise StorageError(f"PostgreSQL telemetry store: {exc}") from exc
