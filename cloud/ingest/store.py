"""The telemetry store interface, shared row shaping, and `open_store()` to pick one by URL.

Every store keys records on (device, seq): storing a record delivered twice is a no-op, so
at-least-once delivery over MQTT becomes exactly-once storage. A few figures of metrics and
drops records are kept in their own columns so per-device summaries are plain SQL."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Protocol

from edgecascade.shared.errors import ConfigError
from edgecascade.shared.telemetry import RecordKind, TelemetryBatch

#: Columns in storage order.
COLUMNS = (
    "device", "seq", "ts", "kind", "body", "received",
    "requests", "escalated", "degraded", "latency_p50_ms", "latency_p99_ms", "dropped_total",
)  # fmt: skip

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

    @property
    def escalation_rate(self) -> float | None:
        return self.escalated / self.requests if self.requests else None


class TelemetryStore(Protocol):
    """Stores validated batches; safe to call from one thread at a time."""

    def store(self, batch: TelemetryBatch, received: float) -> int:
        """Store a batch in one transaction; returns how many records were new (the rest were duplicates)."""
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

    def close(self) -> None: ...


def rows_of(batch: TelemetryBatch, received: float) -> list[Row]:
    rows = []
    for r in batch.records:
        b = r.body
        metrics = r.kind == RecordKind.METRICS
        dropped = (
            b.get("total") if r.kind == RecordKind.DROPS else b.get("dropped_total") if metrics else None
        )
        rows.append(
            (
                batch.device,
                r.seq,
                r.ts,
                r.kind.value,
                json.dumps(b),
                received,
                b.get("requests") if metrics else None,
                b.get("escalated") if metrics else None,
                b.get("degraded") if metrics else None,
                b.get("latency_p50_ms") if metrics else None,
                b.get("latency_p99_ms") if metrics else None,
                dropped,
            )  # fmt: skip
        )
    return rows


#: One query per store dialect; %s-free so both run it as is.
SUMMARY_SQL = """
SELECT device, MAX(received), COUNT(*), COALESCE(SUM(requests), 0), COALESCE(SUM(escalated), 0),
       COALESCE(SUM(degraded), 0), COALESCE(MAX(dropped_total), 0)
FROM telemetry GROUP BY device ORDER BY device
"""
LATEST_METRICS_SQL = """
SELECT t.device, t.latency_p50_ms, t.latency_p99_ms FROM telemetry t
JOIN (SELECT device, MAX(seq) AS seq FROM telemetry WHERE kind = 'metrics' GROUP BY device) m
  ON t.device = m.device AND t.seq = m.seq
"""


def summaries_from(rows: list[Row], latest: list[Row]) -> list[DeviceSummary]:
    lat = {d: (p50, p99) for d, p50, p99 in latest}
    return [
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
        )
        for d, seen, n, req, esc, deg, drop in rows
    ]


def open_store(url: str) -> TelemetryStore:
    """`postgresql://...` -> PostgresStore; `sqlite:///path`, or a plain path -> SqliteStore."""
    if url.startswith(("postgresql://", "postgres://")):
        from edgecascade.cloud.ingest.postgres_store import PostgresStore

        return PostgresStore(url)
    if url.startswith("sqlite:///"):
        url = url[len("sqlite:///") :]
    elif "://" in url:
        raise ConfigError(
            f"expected a postgresql:// URL, sqlite:///path or a file path, got {url!r}", key="store"
        )
    from edgecascade.cloud.ingest.sqlite_store import SqliteStore

    return SqliteStore(url)
