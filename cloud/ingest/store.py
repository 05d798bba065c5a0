"""The telemetry store interface and the row shaping its implementations share
(`open_store()` in cloud/ingest/stores.py picks one by URL).

Every store keys records on (device, seq): storing a record delivered twice is a no-op, so
at-least-once delivery over MQTT becomes exactly-once storage. A few figures of metrics and
drops records are kept in their own columns so per-device summaries are plain SQL.

A record that cannot be stored never holds up the others: the batch's `rejected` records,
and any record the database itself refuses (a value out of its range, a constraint), go to
the `dead_letters` table with the reason, in the same transaction as the rest of the batch.
Only a failure of the database itself (unreachable, locked, disk full) raises StorageError,
for the ingester to retry the whole batch.

A dead letter is stored once too, under its `dedupe_key` (`DeadLetterKeys`): a record with a
usable sequence number is known by (device, seq, its content), as the protocol knows records,
so a resend in another batch matches; one without (missing, null, -1, 2**63, text, 1.5) can
only be known by its place, (device, the batch, its position, its content)."""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass
from functools import cached_property
from typing import Any, ClassVar, Protocol

from edgecascade.shared.telemetry import MAX_SEQ, RecordKind, RejectedRecord, TelemetryBatch, TelemetryRecord

#: Columns in storage order. `model` is the served model a per-request record names (NULL
#: for other kinds and for records of agents from before per-model telemetry).
COLUMNS = (
    "device", "seq", "ts", "kind", "body", "received",
    "requests", "escalated", "degraded", "latency_p50_ms", "latency_p99_ms", "dropped_total",
    "model",
)  # fmt: skip

#: Record kinds that name the served model they answered for.
PER_REQUEST_KINDS = frozenset({RecordKind.INFERENCE, RecordKind.HARD_CASE})

Row = tuple[Any, ...]


@dataclass(frozen=True)
class DeviceSummary:
    """Per-device figures for `edgecascade fleet telemetry`."""

    device: str
    last_seen: float  # when the last record was received (Unix time)
    records: int
    requests: int  # from metrics records: every request, even when records are sampled
    escalated: int
    degraded: int
    latency_p50_ms: float | None  # of the latest metrics interval
    latency_p99_ms: float | None
    dropped: int  # cumulative records evicted on the device

    dead_letters: int = 0  # records of the device's batches that could not be stored

    @property
    def escalation_rate(self) -> float | None:
        return self.escalated / self.requests if self.requests else None


@dataclass(frozen=True)
class ModelCount:
    """Per-request records of one served model of one device, for `fleet telemetry --by-model`."""

    device: str
    model: str | None
    records: int
    escalated: int
    degraded: int


@dataclass(frozen=True)
class StoreResult:
    """What storing one batch did: every record is in exactly one of the three counts."""

    stored: int  # new records
    duplicates: int  # already stored (a redelivery)
    dead_lettered: int  # could not be stored; kept in dead_letters with the reason
    reasons: tuple[str, ...] = ()  # of the dead-lettered records, in batch order


@dataclass(frozen=True)
class DeadLetter:
    device: str
    seq: int | None
    kind: str | None
    reason: str
    record: str
    received: float


class TelemetryStore(Protocol):
    """Stores validated batches; safe to call from one thread at a time."""

    def store(self, batch: TelemetryBatch, received: float) -> StoreResult:
        """Store a batch in one transaction, its rejected and unstorable records as dead letters.
        Raises StorageError only when the database itself fails (then nothing was stored)."""
        ...

    def dead_letters(self, device: str | None = None, limit: int = 100) -> list[DeadLetter]:
        """The newest dead letters (of one device, or all), newest first."""
        ...

    def count(self, device: str | None = None) -> int:
        """Records stored (for one device, or all)."""
        ...

    def seqs(self, device: str) -> list[int]:
        """A device's stored sequence numbers, ascending."""
        ...

    def bodies(self, device: str, kind: RecordKind) -> list[dict[str, Any]]:
        """A device's record bodies of one kind, in sequence order."""
        ...

    def summaries(self) -> list[DeviceSummary]:
        """One summary per device, by device id."""
        ...

    def model_counts(self, device: str | None = None) -> list[ModelCount]:
        """Per-request records per (device, served model), by device then model; records
        that name no model count under None."""
        ...

    def close(self) -> None: ...


DEAD_LETTER_COLUMNS = ("device", "seq", "kind", "reason", "record", "received")
#: What a dead letter is written with: its identity too, NULL only in rows from before it.
DEAD_LETTER_INSERT_COLUMNS = (*DEAD_LETTER_COLUMNS, "dedupe_key")


#: The figures of a metrics body kept in their own columns (in COLUMNS order), and whether
#: each is an integer.
_METRICS_FIGURES = (
    ("requests", True),
    ("escalated", True),
    ("degraded", True),
    ("latency_p50_ms", False),
    ("latency_p99_ms", False),
    ("dropped_total", True),
)


class UnstorableBody(ValueError):
    """A body whose figures cannot fill their typed columns (a record for the dead letters)."""


def _figure(body: dict[str, Any], key: str, *, integer: bool) -> int | float | None:
    """A figure of a body for its column: a JSON integer, or any JSON number where not `integer`.
    The body models are lax ("12" is a valid int there, "NaN" a valid float), but text in a
    number column is summed wrongly by SQLite and breaks every reader of the latency columns."""
    value = body.get(key)
    if value is None or (type(value) is int or (type(value) is float and not integer)):
        return value
    wanted = "an integer" if integer else "a number"
    raise UnstorableBody(f"body.{key} must be {wanted}, got {type(value).__name__} {str(value)[:40]!r}")


def row_of(device: str, r: TelemetryRecord, received: float) -> Row:
    """The record's row. Raises ValueError (UnstorableBody for a figure that is not a number of
    its column's kind) for a record no store can hold: it goes to the dead letters."""
    b = r.body
    text = json.dumps(b, allow_nan=False)
    if r.kind == RecordKind.METRICS:
        figures = tuple(_figure(b, key, integer=integer) for key, integer in _METRICS_FIGURES)
    elif r.kind == RecordKind.DROPS:
        figures = (None, None, None, None, None, _figure(b, "total", integer=True))
    else:
        figures = (None,) * 6
    served_model = b.get("served_model") if r.kind in PER_REQUEST_KINDS else None
    return (device, r.seq, r.ts, r.kind.value, text, received, *figures, served_model)


def rows_of(batch: TelemetryBatch, received: float) -> list[Row]:
    return [row_of(batch.device, r, received) for r in batch.records]


#: A record to insert: its position among the batch's valid records, the record, its row.
Pending = tuple[int, TelemetryRecord, Row]


def _sha256(value: object) -> str:
    return hashlib.sha256(json.dumps(value, separators=(",", ":")).encode()).hexdigest()


class DeadLetterKeys:
    """The `dedupe_key` of each dead letter of one batch: the same on every redelivery and
    resend of the batch, different for any two records that are not the same one."""

    def __init__(self, batch: TelemetryBatch) -> None:
        self.batch = batch

    @cached_property
    def _batch_identity(self) -> str:
        """The batch as the protocol sees it: its valid records' sequence numbers (which name
        them) and every rejected record by position and content. The same batch re-encoded
        (other key order or spacing) has the same identity; one differing anywhere does not.
        Computed only for a batch with a dead letter that has no usable sequence number."""
        rejected = [[r.index, r.digest or r.record] for r in self.batch.rejected]
        return _sha256([[r.seq for r in self.batch.records], rejected])

    def _key(self, seq: int | None, position: str, content: str) -> str:
        if seq is not None:  # protocol-named: found again whichever batch it comes in
            return _sha256(["seq", self.batch.device, seq, content])
        return _sha256(["batch", self.batch.device, self._batch_identity, position, content])

    def rejected(self, r: RejectedRecord, nth: int) -> str:
        # Built in code (no index), its place among the rejected records stands in.
        position = f"records.{r.index}" if r.index >= 0 else f"rejected.{nth}"
        return self._key(r.seq, position, r.digest or _sha256(r.record))

    def refused(self, r: TelemetryRecord, position: int) -> str:
        """A valid record the database refused, its content written as a rejected one's is."""
        seq = r.seq if 1 <= r.seq <= MAX_SEQ else None
        whole = {"seq": r.seq, "ts": r.ts, "kind": r.kind.value, "body": r.body}
        canonical = json.dumps(whole, sort_keys=True, separators=(",", ":"))
        return self._key(seq, f"valid.{position}", hashlib.sha256(canonical.encode()).hexdigest())


def shape(
    batch: TelemetryBatch, received: float
) -> tuple[list[Pending], list[Row], list[str], DeadLetterKeys]:
    """Records to insert, dead-letter rows and their reasons (the batch's rejected records and
    any record whose body cannot be written as strict JSON), and the batch's dead-letter keys
    for the records the database refuses."""
    keys = DeadLetterKeys(batch)
    rows: list[Pending] = []
    dead = [dead_row(batch.device, r, received, keys.rejected(r, n)) for n, r in enumerate(batch.rejected)]
    reasons = [r.reason for r in batch.rejected]
    for i, record in enumerate(batch.records):
        try:
            rows.append((i, record, row_of(batch.device, record, received)))
        except UnstorableBody as exc:
            reasons.append(str(exc))
            dead.append(dead_row_of_record(batch.device, record, reasons[-1], received, keys, i))
        except ValueError as exc:  # NaN or Infinity: no store's JSON holds them
            reasons.append(f"body cannot be written as JSON: {exc}")
            dead.append(dead_row_of_record(batch.device, record, reasons[-1], received, keys, i))
    return rows, dead, reasons, keys


def dead_row(device: str, r: RejectedRecord, received: float, key: str) -> Row:
    return (device, r.seq, r.kind, r.reason, r.record, received, key)


def dead_row_of_record(
    device: str, r: TelemetryRecord, reason: str, received: float, keys: DeadLetterKeys, position: int
) -> Row:
    """A valid record the database refused (the `position`th of its batch's), as a dead letter."""
    record = json.dumps({"seq": r.seq, "ts": r.ts, "kind": r.kind.value, "body": r.body})  # NaN kept as text
    seq = r.seq if 1 <= r.seq <= MAX_SEQ else None  # the dead-letter column is a BIGINT too
    return (device, seq, r.kind.value, reason[:500], record[:2000], received, keys.refused(r, position))


#: One query per store dialect; %s-free so both run it as is.
#: The sums are taken as floats (x * 1.0): each figure is a valid 64-bit integer, but one
#: device's two records of 2^63 - 1 would overflow SQLite's integer SUM and fail the summary of
#: the whole fleet (PostgreSQL's SUM of bigint is numeric and cannot overflow).
SUMMARY_SQL = """
SELECT device, MAX(received), COUNT(*), COALESCE(SUM(requests * 1.0), 0),
       COALESCE(SUM(escalated * 1.0), 0), COALESCE(SUM(degraded * 1.0), 0), COALESCE(MAX(dropped_total), 0)
FROM telemetry GROUP BY device ORDER BY device
"""
LATEST_METRICS_SQL = """
SELECT t.device, t.latency_p50_ms, t.latency_p99_ms FROM telemetry t
JOIN (SELECT device, MAX(seq) AS seq FROM telemetry WHERE kind = 'metrics' GROUP BY device) m
  ON t.device = m.device AND t.seq = m.seq
"""


DEAD_COUNTS_SQL = "SELECT device, COUNT(*) FROM dead_letters GROUP BY device"
#: Per-request records by served model; the flags are read from the body by each dialect.
MODEL_COUNTS_SQL = """
SELECT device, model, COUNT(*), COALESCE(SUM({escalated}), 0), COALESCE(SUM({degraded}), 0)
FROM telemetry WHERE kind IN ('inference', 'hard_case') {where}
GROUP BY device, model ORDER BY device, model
"""


def model_counts_from(rows: list[Row]) -> list[ModelCount]:
    return [ModelCount(d, m, int(n), int(e), int(g)) for d, m, n, e, g in rows]


def summaries_from(rows: list[Row], latest: list[Row], dead: list[Row]) -> list[DeviceSummary]:
    """Per-device summaries; a device known only from dead letters gets a row too."""
    lat = {d: (p50, p99) for d, p50, p99 in latest}
    dead_by = {d: int(n) for d, n in dead}
    out = [
        DeviceSummary(
            device=d,
            last_seen=float(seen),
            records=int(n),
            requests=int(req),
            escalated=int(esc),
            degraded=int(deg),
            latency_p50_ms=lat.get(d, (None, None))[0],
            latency_p99_ms=lat.get(d, (None, None))[1],
            dropped=int(drop),
            dead_letters=dead_by.pop(d, 0),
        )
        for d, seen, n, req, esc, deg, drop in rows
    ]
    out += [DeviceSummary(d, 0.0, 0, 0, 0, 0, None, None, 0, n) for d, n in dead_by.items()]
    return sorted(out, key=lambda s: s.device)


def dead_letters_from(rows: list[Row]) -> list[DeadLetter]:
    return [
        DeadLetter(d, seq, kind, reason, record, float(rec)) for d, seq, kind, reason, record, rec in rows
    ]


class SqlReads:
    """The read side the SQL stores share, written once in each store's placeholder style:
    a store sets PARAM (its parameter placeholder) and DEAD_ORDER (the column that orders
    dead letters by arrival) and provides `_query`, `_lock` and `_db`."""

    PARAM: ClassVar[str]
    DEAD_ORDER: ClassVar[str]
    _lock: threading.Lock
    _db: Any

    def _query(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def _body(self, stored: Any) -> dict[str, Any]:
        """A record's body from the value the database returns (here: already decoded)."""
        return dict(stored)

    def count(self, device: str | None = None) -> int:
        if device is None:
            return int(self._query("SELECT COUNT(*) FROM telemetry")[0][0])
        return int(
            self._query(f"SELECT COUNT(*) FROM telemetry WHERE device = {self.PARAM}", (device,))[0][0]
        )

    def seqs(self, device: str) -> list[int]:
        sql = f"SELECT seq FROM telemetry WHERE device = {self.PARAM} ORDER BY seq"
        return [r[0] for r in self._query(sql, (device,))]

    def bodies(self, device: str, kind: RecordKind) -> list[dict[str, Any]]:
        p = self.PARAM
        rows = self._query(
            f"SELECT body FROM telemetry WHERE device = {p} AND kind = {p} ORDER BY seq", (device, kind.value)
        )
        return [self._body(r[0]) for r in rows]

    def dead_letters(self, device: str | None = None, limit: int = 100) -> list[DeadLetter]:
        cols, p, order = ", ".join(DEAD_LETTER_COLUMNS), self.PARAM, self.DEAD_ORDER
        if device is None:
            rows = self._query(f"SELECT {cols} FROM dead_letters ORDER BY {order} DESC LIMIT {p}", (limit,))
        else:
            rows = self._query(
                f"SELECT {cols} FROM dead_letters WHERE device = {p} ORDER BY {order} DESC LIMIT {p}",
                (device, limit),
            )
        return dead_letters_from(rows)

    def summaries(self) -> list[DeviceSummary]:
        return summaries_from(
            self._query(SUMMARY_SQL), self._query(LATEST_METRICS_SQL), self._query(DEAD_COUNTS_SQL)
        )

    def _flag(self, name: str) -> str:
        """SQL reading the boolean `name` of a record's body as 0 or 1, in this dialect."""
        raise NotImplementedError

    def model_counts(self, device: str | None = None) -> list[ModelCount]:
        sql = MODEL_COUNTS_SQL.format(
            escalated=self._flag("escalated"),
            degraded=self._flag("degraded"),
            where="" if device is None else f"AND device = {self.PARAM}",
        )
        return model_counts_from(self._query(sql, () if device is None else (device,)))

    def close(self) -> None:
        with self._lock:
            self._db.close()
