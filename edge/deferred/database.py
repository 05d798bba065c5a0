"""The one SQLite file behind the deferred queue and the verdict store.

Both live in one file so that storing a verdict and deleting its case is one transaction:
a crash can then re-send a case (the cloud's idempotency key answers it from its cache) but
never leave a case both answered and still queued, nor make two verdicts for one request id.

Durability matches the telemetry buffer: WAL, `synchronous=FULL` by default (a commit
survives a power cut; NORMAL: it survives a process crash), one connection behind a lock."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from edgecascade.shared.errors import StorageError
from edgecascade.shared.sqlite_file import open_checked

_SCHEMA = """
CREATE TABLE IF NOT EXISTS cases (
    request_id TEXT PRIMARY KEY, enqueued REAL NOT NULL, features BLOB NOT NULL, shape TEXT NOT NULL,
    raw BLOB, edge_label TEXT NOT NULL, edge_confidence REAL NOT NULL, uncertainty REAL NOT NULL,
    reason TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, size INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS cases_by_age ON cases (enqueued);
CREATE INDEX IF NOT EXISTS cases_by_uncertainty ON cases (uncertainty DESC, enqueued);
CREATE TABLE IF NOT EXISTS verdicts (
    request_id TEXT PRIMARY KEY, created REAL NOT NULL, body TEXT NOT NULL,
    published INTEGER NOT NULL, recorded INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS verdicts_by_age ON verdicts (created);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


class DeferredDatabase:
    """Thread-safe: every access goes through `transaction()` (BEGIN IMMEDIATE ... COMMIT)
    or `read()`, both holding one lock. Raises StorageError for an unusable file."""

    def __init__(self, path: Path, *, synchronous: str = "full") -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        # The shared corruption-safe opener: a damaged file is moved aside and rebuilt.
        self._db = open_checked(
            self.path,
            lambda db: db.executescript(_SCHEMA),
            synchronous="full" if synchronous == "full" else "normal",
        )

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
        with self._lock:
            self._db.close()


def add_counter(db: sqlite3.Connection, name: str, n: int) -> None:
    """Add to a persistent counter, inside the caller's transaction."""
    if n:
        db.execute(
            "INSERT INTO counters VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = value + excluded.value",
            (name, n),
        )
