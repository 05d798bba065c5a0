"""The embedded default store: one SQLite file in WAL mode."""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

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
    device TEXT NOT NULL, seq INTEGER NOT NULL, ts REAL NOT NULL, kind TEXT NOT NULL,
    body TEXT NOT NULL, received REAL NOT NULL,
    requests INTEGER, escalated INTEGER, degraded INTEGER,
    latency_p50_ms REAL, latency_p99_ms REAL, dropped_total INTEGER,
    PRIMARY KEY (device, seq)) WITHOUT ROWID;
"""


class SqliteStore:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise StorageError(f"telemetry store {self.path} is unusable: {exc}") from exc
        self._insert = (
            f"INSERT OR IGNORE INTO telemetry ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
        )

    def store(self, batch: TelemetryBatch, received: float) -> int:
        rows = rows_of(batch, received)
        with self._lock:
            try:
                before = self._db.total_changes
                self._db.execute("BEGIN IMMEDIATE")
                self._db.executemany(self._insert, rows)
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise StorageError(f"telemetry store {self.path}: {exc}") from exc
            return self._db.total_changes - before

    def _query(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

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

    def summaries(self) -> list[DeviceSummary]:
        return summaries_from(self._query(SUMMARY_SQL), self._query(LATEST_METRICS_SQL))

    def close(self) -> None:
        with self._lock:
            self._db.close()
