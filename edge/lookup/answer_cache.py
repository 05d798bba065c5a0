"""The on-device cache of cloud answers, keyed by content key and kept in SQLite.

Bounded by entries and bytes with least-recently-used eviction, entries expire after a TTL,
it survives restarts and power cuts (WAL), and a new cloud model version invalidates it.
A repeated hard case is then answered locally (source "cache"), which also works offline."""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from edgecascade.edge.answer import Answer, ModelRef
from edgecascade.edge.cascade import CascadeRequest
from edgecascade.shared.errors import InputError
from edgecascade.shared.features.spec import ENCODING_VERSION
from edgecascade.shared.lookup import content_key
from edgecascade.shared.sqlite_file import open_checked

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
_ROW_OVERHEAD = 64  # bytes counted per entry beyond its blobs and strings (SQLite page/row cost)
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS answers (
    key BLOB PRIMARY KEY, label TEXT NOT NULL, class_index INTEGER NOT NULL, confidence REAL NOT NULL,
    probs BLOB NOT NULL, size INTEGER NOT NULL, created REAL NOT NULL, used INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS answers_used ON answers (used);
CREATE INDEX IF NOT EXISTS answers_created ON answers (created);
"""


@dataclass
class CacheStats:
    """Counters (since start) and gauges (`entries`, `bytes`) for telemetry and metrics."""

    hits: int = 0
    misses: int = 0
    stores: int = 0
    evictions: int = 0  # least-recently-used entries removed to stay within bounds
    expirations: int = 0  # entries older than the TTL, removed
    invalidations: int = 0  # entries dropped because the cloud model or encoding changed
    errors: int = 0  # SQLite errors at run time; the request went on without the cache
    entries: int = 0
    bytes: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class AnswerCache:
    """Both a cascade lookup (`lookup`) and a cloud-answer sink (`remember`). Thread-safe.
    `clock` gives wall-clock seconds for the TTL (injectable for tests)."""

    def __init__(
        self,
        path: Path,
        *,
        max_entries: int,
        max_bytes: int,
        ttl_s: float,
        clock: Callable[[], float] = time.time,
        encoding_version: int = ENCODING_VERSION,
    ) -> None:
        self.path = path
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.ttl_s = ttl_s
        self.clock = clock
        self.encoding_version = encoding_version
        self.stats = CacheStats()
        self._lock = threading.Lock()
        self._error_logged = False
        self._db = open_checked(path, self._init_schema)
        with self._lock:
            self._model = self._meta("cloud_model")
            stored = self._meta("encoding_version")
            if stored != str(encoding_version):
                if stored is not None:
                    self._drop_all(f"feature-encoding version changed from {stored} to {encoding_version}")
                self._set_meta("encoding_version", str(encoding_version))
            self._db.execute("DELETE FROM answers WHERE created <= ?", (self.clock() - ttl_s,))
            self._refresh_gauges()
            self._tick = int(self._db.execute("SELECT COALESCE(MAX(used), 0) FROM answers").fetchone()[0])
            self._evict()
        log.info(
            "answer cache %s: %d entries, %d bytes, cloud model %s",
            path,
            self.stats.entries,
            self.stats.bytes,
            self._model or "unknown",
        )

    @property
    def cloud_model(self) -> str | None:
        """ "name version" of the cloud model the cached answers came from."""
        return self._model

    def lookup(self, request: CascadeRequest) -> Answer | None:
        """The cached cloud answer for this input, or None. Never raises for a storage fault."""
        key = self._key(request)
        if key is None:
            return None
        now = self.clock()
        with self._lock:
            try:
                row = self._db.execute(
                    "SELECT label, class_index, confidence, probs, created FROM answers WHERE key = ?", (key,)
                ).fetchone()
                if row is None:
                    self.stats.misses += 1
                    return None
                label, index, confidence, probs, created = row
                if now - created >= self.ttl_s:
                    self._delete(key)
                    self.stats.expirations += 1
                    self.stats.misses += 1
                    return None
                self._tick += 1
                self._db.execute("UPDATE answers SET used = ? WHERE key = ?", (self._tick, key))
            except sqlite3.Error as exc:
                self._storage_error("lookup", exc)
                return None
            self.stats.hits += 1
            model = self._model
        name, _, version = (model or "unknown ").partition(" ")
        return Answer(
            label=label,
            class_index=index,
            confidence=confidence,
            source="cache",
            edge_model=None,
            cloud_model=ModelRef(name, version),
            reason="cache hit",
            request_id=request.request_id,
            probabilities=tuple(np.frombuffer(probs, dtype="<f4").tolist()),
        )

    def remember(self, request: CascadeRequest, answer: Answer) -> None:
        """Store a fresh cloud answer. A different cloud model version first empties the cache."""
        key = self._key(request)
        if key is None or answer.cloud_model is None:
            return
        model = f"{answer.cloud_model.name} {answer.cloud_model.version}"
        probs = np.asarray(answer.probabilities, dtype="<f4").tobytes()
        size = len(key) + len(probs) + len(answer.label.encode()) + _ROW_OVERHEAD
        with self._lock:
            try:
                if model != self._model:
                    if self._model is not None:
                        self._drop_all(f"cloud model changed from {self._model} to {model}")
                    self._set_meta("cloud_model", model)
                    self._model = model
                self._tick += 1
                self._db.execute(
                    "INSERT OR REPLACE INTO answers VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        key,
                        answer.label,
                        answer.class_index,
                        answer.confidence,
                        probs,
                        size,
                        self.clock(),
                        self._tick,
                    ),
                )
                self.stats.stores += 1
                self._refresh_gauges()
                self._evict()
            except sqlite3.Error as exc:
                self._storage_error("store", exc)

    def clear(self) -> None:
        """Drop every entry (counted as invalidations)."""
        with self._lock:
            self._drop_all("cleared")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- internals; callers hold self._lock --------------------------------------------------

    def _key(self, request: CascadeRequest) -> bytes | None:
        try:
            return content_key(request.features, self.encoding_version)
        except InputError:
            return None  # non-finite features have no content key; nothing to cache

    def _init_schema(self, db: sqlite3.Connection) -> None:
        db.executescript(_SCHEMA)
        stored = db.execute("SELECT v FROM meta WHERE k = 'schema_version'").fetchone()
        if stored is not None and stored[0] != str(SCHEMA_VERSION):
            raise sqlite3.DatabaseError(f"schema version {stored[0]}, expected {SCHEMA_VERSION}")
        db.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))

    def _meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT v FROM meta WHERE k = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def _set_meta(self, key: str, value: str) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def _refresh_gauges(self) -> None:
        count, size = self._db.execute("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM answers").fetchone()
        self.stats.entries, self.stats.bytes = int(count), int(size)

    def _delete(self, key: bytes) -> None:
        self._db.execute("DELETE FROM answers WHERE key = ?", (key,))
        self._refresh_gauges()

    def _drop_all(self, why: str) -> None:
        dropped = self._db.execute("DELETE FROM answers").rowcount
        self.stats.invalidations += max(dropped, 0)
        self._refresh_gauges()
        log.info("answer cache %s: dropped %d entries: %s", self.path, dropped, why)

    def _evict(self) -> None:
        expired = self._db.execute(
            "DELETE FROM answers WHERE created <= ?", (self.clock() - self.ttl_s,)
        ).rowcount
        if expired > 0:
            self.stats.expirations += expired
            self._refresh_gauges()
        while self.stats.entries > self.max_entries or self.stats.bytes > self.max_bytes:
            oldest = self._db.execute("SELECT key, size FROM answers ORDER BY used LIMIT 1").fetchone()
            if oldest is None:
                break
            self._db.execute("DELETE FROM answers WHERE key = ?", (oldest[0],))
            self.stats.entries -= 1
            self.stats.bytes -= int(oldest[1])
            self.stats.evictions += 1

    def _storage_error(self, what: str, exc: sqlite3.Error) -> None:
        self.stats.errors += 1
        # Once at WARNING, then DEBUG: a failing disk must not flood the log; `errors` counts all.
        level = logging.DEBUG if self._error_logged else logging.WARNING
        self._error_logged = True
        log.log(
            level,
            "answer cache %s: %s failed (%d errors so far): %s",
            self.path,
            what,
            self.stats.errors,
            exc,
        )
