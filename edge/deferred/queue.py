"""The durable queue of hard cases waiting for the cloud (see edge.deferred.database).

Bounds: after every `add()` the queue is cut back to `max_cases` and `max_bytes` (bytes of
stored features and raw input) by dropping the oldest cases; `expire()` drops cases queued
longer than `max_age_s` of the agent's running time (a wall-clock step ages none; cases of
earlier releases go by the time they were queued). Every drop is added to a persistent counter `dropped_<reason>` (size,
count, age, rejected) and logged, so nothing leaves the queue silently."""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from edgecascade.edge.deferred.database import DeferredDatabase, add_counter
from edgecascade.edge.deferred.verdicts import Verdict

log = logging.getLogger(__name__)

Order = Literal["oldest", "most_uncertain"]

_ORDER_SQL = {
    "oldest": "ORDER BY enqueued, request_id",
    "most_uncertain": "ORDER BY uncertainty DESC, enqueued, request_id",
}
_COLUMNS = "request_id, enqueued, features, shape, raw, edge_label, edge_confidence, reason, attempts"


@dataclass(frozen=True, slots=True)
class QueuedCase:
    """One deferred hard case: its encoded features (float32), the raw input only if the
    profile allows, and the edge answer the caller got."""

    request_id: str
    enqueued: float
    features: np.ndarray
    edge_label: str
    edge_confidence: float
    reason: str
    raw: bytes | None = None
    attempts: int = 0

    @property
    def uncertainty(self) -> float:
        return 1.0 - self.edge_confidence


class DeferredQueue:
    def __init__(
        self,
        database: DeferredDatabase,
        *,
        max_cases: int,
        max_bytes: int,
        max_age_s: float,
        order: Order = "oldest",
    ) -> None:
        self.database = database
        self.max_cases = max_cases
        self.max_bytes = max_bytes
        self.max_age_s = max_age_s
        self.order = order

    def add(self, cases: Sequence[QueuedCase]) -> int:
        """Commit cases in one transaction, then drop the oldest beyond the bounds. A request
        id already queued or already answered is ignored. Returns how many were added."""
        rows = []
        for c in cases:
            features = np.ascontiguousarray(c.features, dtype="<f4")
            blob = features.tobytes()
            size = len(blob) + len(c.raw or b"")
            shape = json.dumps(list(features.shape))
            rows.append(
                (c.request_id, c.enqueued, blob, shape, c.raw, c.edge_label, c.edge_confidence)
                + (c.uncertainty, c.reason, size)
            )
        with self.database.transaction("enqueue") as db:
            held = self.database.save_running(db)
            before = db.total_changes
            db.executemany(
                "INSERT OR IGNORE INTO cases (request_id, enqueued, features, shape, raw, edge_label, "
                "edge_confidence, uncertainty, reason, size, held) SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ? "
                "WHERE NOT EXISTS (SELECT 1 FROM verdicts WHERE request_id = ?)",
                [(*row, held, row[0]) for row in rows],
            )
            added = db.total_changes - before
            add_counter(db, "enqueued", added)
            self._evict_to_bounds(db)
        return added

    def _evict_to_bounds(self, db: sqlite3.Connection) -> None:
        count, size = db.execute("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM cases").fetchone()
        if count > self.max_cases:
            self._drop_oldest(db, count - self.max_cases, "count")
            count, size = db.execute("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM cases").fetchone()
        if size > self.max_bytes:
            victims, freed = 0, 0
            sizes = db.execute("SELECT size FROM cases ORDER BY enqueued, request_id").fetchall()
            for (case_size,) in sizes:
                victims += 1
                freed += case_size
                if freed >= size - self.max_bytes:
                    break
            self._drop_oldest(db, victims, "size")

    def _drop_oldest(self, db: sqlite3.Connection, n: int, reason: str) -> None:
        dropped = db.execute(
            "DELETE FROM cases WHERE request_id IN "
            "(SELECT request_id FROM cases ORDER BY enqueued, request_id LIMIT ?)",
            (n,),
        ).rowcount
        add_counter(db, f"dropped_{reason}", dropped)
        log.warning("deferred queue full (%s): dropped the %d oldest cases", reason, dropped)

    def expire(self, now: float) -> int:
        """Drop cases queued longer than max_age_s of running time (those of earlier releases:
        queued before the wall time `now` - max_age_s); returns how many."""
        with self.database.transaction("expire") as db:
            running = self.database.save_running(db)
            dropped = db.execute(
                "DELETE FROM cases WHERE CASE WHEN held IS NULL THEN enqueued < ? ELSE held < ? END",
                (now - self.max_age_s, running - self.max_age_s),
            ).rowcount
            add_counter(db, "dropped_age", dropped)
        if dropped:
            log.warning("deferred queue: dropped %d cases older than %.0f s", dropped, self.max_age_s)
        return max(dropped, 0)

    def next(self) -> QueuedCase | None:
        """The case to send next (by `order`), or None when the queue is empty."""
        with self.database.read("peek") as db:
            row = db.execute(f"SELECT {_COLUMNS} FROM cases {_ORDER_SQL[self.order]} LIMIT 1").fetchone()
        if row is None:
            return None
        rid, enqueued, blob, shape, raw, label, confidence, reason, attempts = row
        features = np.frombuffer(blob, dtype="<f4").reshape(json.loads(shape))
        return QueuedCase(rid, enqueued, features, label, confidence, reason, raw, attempts)

    def record_failure(self, request_id: str) -> int:
        """Count a failed send of this case; returns its attempts so far."""
        with self.database.transaction("record failure") as db:
            db.execute("UPDATE cases SET attempts = attempts + 1 WHERE request_id = ?", (request_id,))
            row = db.execute("SELECT attempts FROM cases WHERE request_id = ?", (request_id,)).fetchone()
        return 0 if row is None else int(row[0])

    def drop(self, request_id: str, reason: str) -> None:
        """Give up on one case (counted as dropped_<reason>)."""
        with self.database.transaction("drop") as db:
            dropped = db.execute("DELETE FROM cases WHERE request_id = ?", (request_id,)).rowcount
            add_counter(db, f"dropped_{reason}", dropped)
        log.warning("deferred case %s dropped: %s", request_id, reason)

    def complete(self, verdict: Verdict, *, published: bool = False) -> bool:
        """Store the verdict and delete its case in one transaction. Returns False (and stores
        nothing) if this request id already has a verdict: one verdict per request id, ever
        (while it is kept). `published=True` marks a device with no MQTT as nothing to publish."""
        body = json.dumps(verdict.payload())
        with self.database.transaction("complete") as db:
            stored = db.execute(
                "INSERT OR IGNORE INTO verdicts VALUES (?, ?, ?, ?, 0)",
                (verdict.request_id, verdict.answered_at, body, int(published)),
            ).rowcount
            db.execute("DELETE FROM cases WHERE request_id = ?", (verdict.request_id,))
            add_counter(db, "verdicts", stored)
        return stored == 1

    def contains(self, request_id: str) -> bool:
        """Whether this request is queued (its verdict is still to come)."""
        with self.database.read("contains") as db:
            return (
                db.execute("SELECT 1 FROM cases WHERE request_id = ?", (request_id,)).fetchone() is not None
            )

    def depth(self) -> int:
        with self.database.read("depth") as db:
            return int(db.execute("SELECT COUNT(*) FROM cases").fetchone()[0])

    def size_bytes(self) -> int:
        with self.database.read("size") as db:
            return int(db.execute("SELECT COALESCE(SUM(size), 0) FROM cases").fetchone()[0])
