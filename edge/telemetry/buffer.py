"""The durable on-device telemetry buffer: SQLite in WAL mode, the source of truth for the uplink.

Durability policy:
- A record is *acknowledged* once `append()` has committed it; it then survives a crash or
  `kill -9` of the agent, and with `synchronous="full"` (the default) also a power cut.
  With "normal", a power cut may roll back the last commits (never corrupt the file).
- Records are deleted only by `delete()`/`delete_ranges()`, which a sink calls once its
  destination confirmed it stored them (the MQTT sink: on the ingester's acknowledgement).
- Sequence numbers are assigned inside the committing transaction and stored with the
  records, so they are strictly increasing and never reused after a restart. A new file's
  sequence starts at the current time in microseconds, above any an earlier file of the same
  device reached (a wiped data folder, a reflashed card, a damaged file the shared
  corruption-safe opener rebuilt), so the cloud never takes a new record for a duplicate of
  a lost one.

Bounds and eviction (issue 8, priority-aware): after every append the buffer is cut back to
`max_bytes` (bytes of record bodies) by evicting the lowest priority class first, oldest
first within it (see shared.telemetry.PRIORITY: inference < event < hard_case = verdict <
update_status = metrics < drops); a class is touched only when no lower one is left. Drop
reports are never evicted by size. `expire()` evicts records held longer than `max_age_s`,
counted in the agent's running time (edge/running_clock.py), never by the wall clock: a Pi
without a real-time clock steps it forward at its NTP sync, and every record made before
would look weeks old. Records of files from before this carry no such age and go by their
timestamp. Every
eviction is added to cumulative counters kept in the same file, and a fresh `drops` record
carrying the totals replaces any unsent older one in the same transaction: the cloud always
learns the count, and nothing is lost silently.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from edgecascade.edge.running_clock import RunningClock
from edgecascade.shared.errors import StorageError
from edgecascade.shared.sqlite_file import Synchronous, open_checked
from edgecascade.shared.telemetry import PRIORITY, RecordKind

log = logging.getLogger(__name__)

_DROPS_PRIORITY = PRIORITY[RecordKind.DROPS]
#: Commits store the running clock at most this often (a restart loses at most this much age).
_RUNNING_SAVE_S = 10.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    seq INTEGER PRIMARY KEY, ts REAL NOT NULL, kind TEXT NOT NULL,
    priority INTEGER NOT NULL, size INTEGER NOT NULL, body TEXT NOT NULL, held REAL);
CREATE INDEX IF NOT EXISTS records_by_priority ON records (priority, seq);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS drops (kind TEXT NOT NULL, reason TEXT NOT NULL,
    count INTEGER NOT NULL, PRIMARY KEY (kind, reason));
"""


def _create_schema(db: sqlite3.Connection) -> None:
    db.executescript(_SCHEMA)
    # Files of earlier releases: their records keep no running-time age (held NULL).
    if "held" not in {row[1] for row in db.execute("PRAGMA table_info(records)")}:
        db.execute("ALTER TABLE records ADD COLUMN held REAL")


@dataclass(frozen=True, slots=True)
class BufferedRecord:
    seq: int
    ts: float
    kind: str
    body: str  # JSON

    def row(self) -> tuple[int, float, str, str]:
        return (self.seq, self.ts, self.kind, self.body)


class TelemetryBuffer:
    """Thread-safe (one connection behind a lock): the writer thread appends, the uplink
    reads and deletes. `clock` gives Unix time for sequence starts and `monotonic` the running
    time ages are counted in (both injected by tests)."""

    def __init__(
        self,
        path: Path,
        *,
        max_bytes: int,
        max_age_s: float,
        synchronous: Synchronous = "full",
        clock: Callable[[], float] | None = None,
        monotonic: Callable[[], float] | None = None,
    ) -> None:
        import time

        self.path = Path(path)
        self.max_bytes = max_bytes
        self.max_age_s = max_age_s
        self.clock = clock or time.time
        self._lock = threading.Lock()
        self._db = open_checked(
            self.path,
            _create_schema,
            synchronous=synchronous,
            on_rebuilt=self._start_sequence_past_lost_file,
        )
        try:
            row = self._db.execute("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM records").fetchone()
            self._count, self._bytes = int(row[0]), int(row[1])
            meta = dict(self._db.execute("SELECT key, value FROM meta").fetchall())
            if "last_seq" not in meta:
                # A new buffer starts from the time too, not from 1: the same device id may have
                # sent 1, 2, 3... from a data folder that was wiped or an SD card that was
                # reflashed, and the cloud would take every new record for one of those.
                meta = self._start_sequence(self._db)
            self._last_seq = int(meta["last_seq"])
            #: The sequence before this file's first record (0 for files of older releases).
            self.start_seq = int(meta.get("start_seq", 0))
            self.running = RunningClock(int(meta.get("running_ms", 0)) / 1000, monotonic or time.monotonic)
            self._running_saved = self.running()
        except sqlite3.Error as exc:
            raise StorageError(f"telemetry buffer {self.path} is unusable: {exc}") from exc

    def _start_sequence(self, db: sqlite3.Connection) -> dict[str, int]:
        start = max(0, int(self.clock() * 1_000_000))
        with db:
            db.executemany(
                "INSERT OR REPLACE INTO meta VALUES (?, ?)", [("last_seq", start), ("start_seq", start)]
            )
        return {"last_seq": start, "start_seq": start}

    def _start_sequence_past_lost_file(self, db: sqlite3.Connection) -> None:
        start = self._start_sequence(db)["last_seq"]
        log.warning(
            "telemetry buffer %s was rebuilt; its sequence numbers continue from %d", self.path, start
        )

    # -- writing --------------------------------------------------------------------------
    def append(self, records: Iterable[tuple[float, str, str]]) -> int:
        """Commit (ts, kind, body_json) records in one transaction, then evict to the byte cap.
        Returns the last sequence number assigned; every record up to it is acknowledged."""
        with self._lock:
            seq = self._last_seq
            held = self.running()
            rows = []
            for ts, kind, body in records:
                seq += 1
                rows.append((seq, ts, kind, PRIORITY[RecordKind(kind)], len(body), body, held))
            if not rows:
                return seq
            try:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.executemany(
                    "INSERT INTO records (seq, ts, kind, priority, size, body, held) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    rows,
                )
                self._db.execute("INSERT OR REPLACE INTO meta VALUES ('last_seq', ?)", (seq,))
                self._save_running(held)
                self._last_seq = seq
                self._count += len(rows)
                self._bytes += sum(r[4] for r in rows)
                self._evict_to_cap()
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback()
                raise StorageError(f"telemetry buffer {self.path}: append failed: {exc}") from exc
            return self._last_seq

    def expire(self) -> int:
        """Evict records held longer than max_age_s of running time (drop reports excepted).
        Returns how many."""
        with self._lock:
            now = self.running()
            try:
                self._db.execute("BEGIN IMMEDIATE")
                victims = self._db.execute(
                    "SELECT seq, kind, size FROM records WHERE priority < ? AND "
                    "CASE WHEN held IS NULL THEN ts < ? ELSE held < ? END",
                    (_DROPS_PRIORITY, self.clock() - self.max_age_s, now - self.max_age_s),
                ).fetchall()
                self._evict(victims, "age")
                self._save_running(now, force=True)
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback()
                raise StorageError(f"telemetry buffer {self.path}: expiry failed: {exc}") from exc
        return len(victims)

    def _evict_to_cap(self) -> None:
        while self._bytes > self.max_bytes:
            need = self._bytes - self.max_bytes
            lowest = self._db.execute(
                "SELECT MIN(priority) FROM records WHERE priority < ?", (_DROPS_PRIORITY,)
            ).fetchone()[0]
            if lowest is None:
                log.warning("telemetry buffer over its cap with only drop reports left")
                return
            victims, freed = [], 0
            for seq, kind, size in self._db.execute(
                "SELECT seq, kind, size FROM records WHERE priority = ? ORDER BY seq", (lowest,)
            ):
                victims.append((seq, kind, size))
                freed += size
                if freed >= need:
                    break
            self._evict(victims, "size")

    def _evict(self, victims: list[tuple[int, str, int]], reason: str) -> None:
        """Delete victims and fold them into the cumulative drop counters and a fresh drops record."""
        if not victims:
            return
        self._db.executemany("DELETE FROM records WHERE seq = ?", [(v[0],) for v in victims])
        self._count -= len(victims)
        self._bytes -= sum(v[2] for v in victims)
        per_kind: dict[str, int] = {}
        for _, kind, _ in victims:
            per_kind[kind] = per_kind.get(kind, 0) + 1
        log.warning("telemetry buffer evicted %d records (%s): %s", len(victims), reason, per_kind)
        self._add_drops(per_kind, reason)

    def count_dropped(self, per_kind: dict[str, int], reason: str) -> None:
        """Count records that never entered the buffer (refused as invalid) like evicted ones:
        in the cumulative counters and a fresh drops record, so the cloud learns of them."""
        if not per_kind:
            return
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                self._add_drops(per_kind, reason)
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback()
                raise StorageError(f"telemetry buffer {self.path}: counting drops failed: {exc}") from exc

    def _add_drops(self, per_kind: dict[str, int], reason: str) -> None:
        for kind, n in per_kind.items():
            self._db.execute(
                "INSERT INTO drops VALUES (?, ?, ?) ON CONFLICT (kind, reason) "
                "DO UPDATE SET count = count + excluded.count",
                (kind, reason, n),
            )
        by_kind: dict[str, int] = {}
        by_reason: dict[str, int] = {}
        for kind, why, n in self._db.execute("SELECT kind, reason, count FROM drops"):
            by_kind[kind] = by_kind.get(kind, 0) + n
            by_reason[why] = by_reason.get(why, 0) + n
        body = json.dumps({"total": sum(by_kind.values()), "by_kind": by_kind, "by_reason": by_reason})
        # The totals are cumulative, so an unsent older report is superseded by this one.
        old = self._db.execute(
            "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM records WHERE kind = ?", (RecordKind.DROPS,)
        ).fetchone()
        self._db.execute("DELETE FROM records WHERE kind = ?", (RecordKind.DROPS,))
        self._last_seq += 1
        self._db.execute(
            "INSERT INTO records (seq, ts, kind, priority, size, body, held) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                self._last_seq,
                self.clock(),
                RecordKind.DROPS,
                _DROPS_PRIORITY,
                len(body),
                body,
                self.running(),
            ),
        )
        self._db.execute("INSERT OR REPLACE INTO meta VALUES ('last_seq', ?)", (self._last_seq,))
        self._count += 1 - int(old[0])
        self._bytes += len(body) - int(old[1])

    def _rollback(self) -> None:
        try:
            self._db.execute("ROLLBACK")
        except sqlite3.Error:
            log.debug("rollback after a failed telemetry transaction also failed", exc_info=True)
        # Counters may be off after a failed transaction: recount from the file.
        row = self._db.execute("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM records").fetchone()
        self._count, self._bytes = int(row[0]), int(row[1])
        last = self._db.execute("SELECT value FROM meta WHERE key='last_seq'").fetchone()
        self._last_seq = int(last[0]) if last else 0

    # -- reading and deleting (uplink) ----------------------------------------------------
    def peek(self, limit: int, after: tuple[int, int] | None = None) -> list[BufferedRecord]:
        """Up to `limit` records in send order: highest priority first, oldest first within it.
        `after` = (priority, seq) of the last record already taken, to page past in-flight ones."""
        with self._lock:
            if after is None:
                rows = self._db.execute(
                    "SELECT seq, ts, kind, body FROM records ORDER BY priority DESC, seq LIMIT ?", (limit,)
                ).fetchall()
            else:
                prio, seq = after
                rows = self._db.execute(
                    "SELECT seq, ts, kind, body FROM records WHERE priority < ? OR (priority = ? AND seq > ?) "
                    "ORDER BY priority DESC, seq LIMIT ?",
                    (prio, prio, seq, limit),
                ).fetchall()
        return [BufferedRecord(*r) for r in rows]

    def delete_ranges(self, ranges: Iterable[tuple[int, int]]) -> int:
        """Delete the records in these inclusive seq ranges (what the destination confirmed it
        stored). Returns how many were still there; deleting one twice is harmless."""
        pairs = list(ranges)
        if not pairs:
            return 0
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                gone = [0, 0]
                for lo, hi in pairs:
                    n, size = self._db.execute(
                        "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM records WHERE seq BETWEEN ? AND ?",
                        (lo, hi),
                    ).fetchone()
                    if n:
                        self._db.execute("DELETE FROM records WHERE seq BETWEEN ? AND ?", (lo, hi))
                        gone[0] += int(n)
                        gone[1] += int(size)
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback()
                raise StorageError(f"telemetry buffer {self.path}: delete failed: {exc}") from exc
            self._count -= gone[0]
            self._bytes -= gone[1]
            return gone[0]

    def delete(self, seqs: Iterable[int]) -> int:
        """Delete records by sequence number. Returns how many were still there."""
        keys = [(s,) for s in seqs]
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                gone = self._db.execute(
                    f"SELECT COUNT(*), COALESCE(SUM(size), 0) FROM records WHERE seq IN "
                    f"({','.join('?' * len(keys))})",
                    [k[0] for k in keys],
                ).fetchone()
                self._db.executemany("DELETE FROM records WHERE seq = ?", keys)
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback()
                raise StorageError(f"telemetry buffer {self.path}: delete failed: {exc}") from exc
            self._count -= int(gone[0])
            self._bytes -= int(gone[1])
            return int(gone[0])

    # -- state ------------------------------------------------------------------------------
    @property
    def last_seq(self) -> int:
        """The last acknowledged (committed) sequence number."""
        return self._last_seq

    @property
    def depth(self) -> int:
        return self._count

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def dropped(self) -> dict[str, int]:
        """Cumulative evicted records per kind."""
        with self._lock:
            rows = self._db.execute("SELECT kind, SUM(count) FROM drops GROUP BY kind").fetchall()
        return {k: int(n) for k, n in rows}

    def dropped_by_reason(self) -> dict[str, int]:
        """Cumulative dropped records per reason: "size" and "age" (evicted after they had a
        sequence number) and "invalid" (refused before they got one)."""
        with self._lock:
            rows = self._db.execute("SELECT reason, SUM(count) FROM drops GROUP BY reason").fetchall()
        return {r: int(n) for r, n in rows}

    def seqs(self) -> list[int]:
        """Every buffered sequence number, ascending (for tests and diagnostics)."""
        with self._lock:
            return [r[0] for r in self._db.execute("SELECT seq FROM records ORDER BY seq")]

    def _save_running(self, now: float, *, force: bool = False) -> None:
        """Store the running clock inside the caller's transaction (now and then: a restart
        then loses at most _RUNNING_SAVE_S of every record's age, never adds to it)."""
        if force or now - self._running_saved >= _RUNNING_SAVE_S:
            self._db.execute("INSERT OR REPLACE INTO meta VALUES ('running_ms', ?)", (int(now * 1000),))
            self._running_saved = now

    def close(self) -> None:
        with self._lock:
            try:
                with self._db:
                    self._db.execute(
                        "INSERT OR REPLACE INTO meta VALUES ('running_ms', ?)", (int(self.running() * 1000),)
                    )
            except sqlite3.Error as exc:  # a full disk at the stop: the ages lose the last seconds
                log.warning("telemetry buffer %s: cannot store its running time: %s", self.path, exc)
            self._db.close()
