"""PostgreSQL store (psycopg 3): one multi-row INSERT ... ON CONFLICT DO NOTHING per batch."""

from __future__ import annotations

import threading
from typing import Any

import psycopg

from edgecascade.cloud.ingest.store import (
    COLUMNS,
    LATEST_METRICS_SQL,
    SUMMARY_SQL,
    DeviceSummary,
    rows_of,
    summaries_from,
)
from edgecascade.shared.errors import StorageError
from edgecascade.shared.telemetry import RecordKind, TelemetryBatch

_SCHEMA = """
CREATE TABLE IF NOT EXISTS telemetry (
    device TEXT NOT NULL, seq BIGINT NOT NULL, ts DOUBLE PRECISION NOT NULL, kind TEXT NOT NULL,
    body JSONB NOT NULL, received DOUBLE PRECISION NOT NULL,
    requests BIGINT, escalated BIGINT, degraded BIGINT,
    latency_p50_ms DOUBLE PRECISION, latency_p99_ms DOUBLE PRECISION, dropped_total BIGINT,
    PRIMARY KEY (device, seq))
"""
_TYPES = ("text", "bigint", "float8", "text", "jsonb", "float8",
          "bigint", "bigint", "bigint", "float8", "float8", "bigint")  # fmt: skip
# Columns as arrays, unnested server-side: one statement and one round trip per batch.
_INSERT = (
    f"INSERT INTO telemetry ({', '.join(COLUMNS)}) SELECT * FROM unnest("
    + ", ".join(f"%s::{t}[]" for t in _TYPES)
    + ") ON CONFLICT (device, seq) DO NOTHING"
)


class PostgresStore:
    def __init__(self, url: str, *, table_schema: str | None = None) -> None:
        self.url = url
        self._lock = threading.Lock()
        try:
            self._db = psycopg.connect(url, autocommit=True)
            if table_schema:
                self._db.execute(f'CREATE SCHEMA IF NOT EXISTS "{table_schema}"')
                self._db.execute(f'SET search_path TO "{table_schema}"')
            self._db.execute(_SCHEMA)
        except psycopg.Error as exc:
            raise StorageError(f"PostgreSQL telemetry store unusable: {exc}") from exc

    def store(self, batch: TelemetryBatch, received: float) -> int:
        columns = list(zip(*rows_of(batch, received), strict=True))
        with self._lock:
            try:
                cur = self._db.execute(_INSERT, [list(c) for c in columns])
            except psycopg.Error as exc:
                raise StorageError(f"PostgreSQL telemetry store: {exc}") from exc
            return max(cur.rowcount, 0)

    def _query(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                return self._db.execute(sql, args).fetchall()
            except psycopg.Error as exc:
                raise StorageError(f"PostgreSQL telemetry store: {exc}") from exc

    def count(self, device: str | None = None) -> int:
        if device is None:
            return int(self._query("SELECT COUNT(*) FROM telemetry")[0][0])
        return int(self._query("SELECT COUNT(*) FROM telemetry WHERE device = %s", (device,))[0][0])

    def seqs(self, device: str) -> list[int]:
        return [
            r[0] for r in self._query("SELECT seq FROM telemetry WHERE device = %s ORDER BY seq", (device,))
        ]

    def bodies(self, device: str, kind: RecordKind) -> list[dict[str, Any]]:
        rows = self._query(
            "SELECT body FROM telemetry WHERE device = %s AND kind = %s ORDER BY seq", (device, kind.value)
        )
        return [r[0] for r in rows]

    def summaries(self) -> list[DeviceSummary]:
        return summaries_from(self._query(SUMMARY_SQL), self._query(LATEST_METRICS_SQL))

    def close(self) -> None:
        with self._lock:
            self._db.close()
