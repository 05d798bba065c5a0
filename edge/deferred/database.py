"""The one SQLite file behind the deferred queue and the verdict store.

Both live in one file so that storing a verdict and deleting its case is one transaction:
a crash can then re-send a case (the cloud's idempotency key answers it from its cache) but
never leave a case both answered and still queued, nor make two verdicts for one request id.

Durability matches the telemetry buffer: WAL, `synchronous=FULL` by default (a commit
survives a power cut; NORMAL: it survives a process crash), one connection behind a lock."""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from edgecascade.edge.running_clock import RunningClock
from edgecascade.shared.errors import StorageError
from edgecascade.shared.sqlite_file import open_checked

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS cases (
    request_id TEXT PRIMARY KEY, enqueued REAL NOT NULL, features BLOB NOT NULL, shape TEXT NOT NULL,
    raw BLOB, edge_label TEXT NOT NULL, edge_confidence REAL NOT NULL, uncertainty REAL NOT NULL,
    reason TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, size INTEGER NOT NULL, held REAL);
CREATE INDEX IF NOT EXISTS cases_by_age ON cases (enqueued);
CREATE INDEX IF NOT EXISTS cases_by_uncertainty ON cases (uncertainty DESC, enqueued);
CREATE TABLE IF NOT EXISTS verdicts (
    request_id TEXT PRIMARY KEY, created REAL NOT NULL, body TEXT NOT NULL,
    published INTEGER NOT NULL, recorded INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS verdicts_by_age ON verdicts (created);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


def _create_schema(db: sqlite3.Connection) -> None:
    db.executescript(_SCHEMA)
    # Files of earlier releases: their cases keep no running-time age (held NULL).
    if "held" not in {row[1] for row in db.execute("PRAGMA table_info(cases)")}:
        db.execute("ALTER TABLE cases ADD COLUMN held REAL")


class DeferredDatabase:
    """Thread-safe: every access goes through `transaction()` (BEGIN IMMEDIATE ... COMMIT)
    or `read()`, both holding one lock. Raises StorageError for an unusable file.

    `running` is the clock cases age by (edge/running_clock.py: a wall-clock step ages nothing),
    going on from the reading stored at the last commit; `monotonic` is injected by tests."""

    def __init__(
        self, path: Path, *, synchronous: str = "full", monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        # The shared corruption-safe opener: a damaged file is moved aside and rebuilt.
        self._db = open_checked(
            self.path,
            _create_schema,
            synchronous="full" if synchronous == "full" else "normal",
        )
        try:
            row = self._db.execute("SELECT value FROM meta WHERE key = 'running_ms'").fetchone()
        except sqlite3.Error as exc:
            raise StorageError(f"deferred store {self.path} is unusable: {exc}") from exc
        self.running = RunningClock(int(row[0]) / 1000 if row else 0.0, monotonic)

    def save_running(self, db: sqlite3.Connection) -> float:
        """Store the running clock inside the caller's transaction; returns its reading."""
        now = self.running()
        db.execute("INSERT OR REPLACE INTO meta VALUES ('running_ms', ?)", (int(now * 1000),))
        return now

    @contextmanager
    def transaction(self, what: str) -> Iterator[sqlite3.Connection]:
        """One write transaction; rolled back and turned into StorageError on any SQLite error."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                yield self._db
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise StorageError(f"deferred store {self.path}: {what} failed: {exc}") from exc

    @contextmanager
    def read(self, what: str) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                yield self._db
            except sqlite3.Error as exc:
                raise StorageError(f"deferred store {self.path}: {what} failed: {exc}") from exc

    def counters(self) -> dict[str, int]:
        """Persistent cumulative counters (enqueued, verdicts, dropped_<reason>)."""
        with self.read("counters") as db:
            return {name: int(value) for name, value in db.execute("SELECT name, value FROM counters")}

    def close(self) -> None:
        try:
            with self.transaction("store the running time") as db:
                self.save_running(db)
        except StorageError as exc:  # a full disk at the stop: the ages lose the last seconds
            log.warning("%s", exc)
        with self._lock:
            self._db.close()


def add_counter(db: sqlite3.Connection, name: str, n: int) -> None:
    """Add to a persistent counter, inside the caller's transaction."""
    if n:
        db.execute(
            "INSERT INTO counters VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = value + excluded.value",
            (name, n),
        )
