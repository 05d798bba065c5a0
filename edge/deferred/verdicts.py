"""Late verdicts: the cloud's answer on a deferred case, kept by request id for the local API
and as an outbox for the MQTT event and the telemetry record (flags `published`, `recorded`)."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from edgecascade.edge.deferred.database import DeferredDatabase, add_counter

log = logging.getLogger(__name__)

PAYLOAD_SCHEMA = 1


@dataclass(frozen=True, slots=True)
class Verdict:
    request_id: str
    edge_label: str
    edge_confidence: float
    cloud_label: str
    cloud_confidence: float
    cloud_model: str
    cloud_model_version: str
    queued_at: float
    answered_at: float

    @property
    def agree(self) -> bool:
        return self.edge_label == self.cloud_label

    def payload(self) -> dict[str, Any]:
        """The MQTT event body (schema 1), also what `VerdictStore.get()` returns."""
        return {
            "schema": PAYLOAD_SCHEMA,
            "request_id": self.request_id,
            "edge_label": self.edge_label,
            "edge_confidence": self.edge_confidence,
            "cloud_label": self.cloud_label,
            "cloud_confidence": self.cloud_confidence,
            "cloud_model": {"name": self.cloud_model, "version": self.cloud_model_version},
            "agree": self.agree,
            "queued_at": self.queued_at,
            "answered_at": self.answered_at,
        }


def telemetry_body(payload: dict[str, Any]) -> dict[str, Any]:
    """A verdict payload as a `verdict` telemetry record body (shared.telemetry.VerdictBody)."""
    body = {k: v for k, v in payload.items() if k not in ("schema", "cloud_model")}
    body["cloud_model"] = payload["cloud_model"]["name"]
    body["cloud_model_version"] = payload["cloud_model"]["version"]
    return body


class VerdictStore:
    """Reads and outbox state of stored verdicts; verdicts are written by
    `DeferredQueue.complete()` (in the transaction that deletes their case)."""

    def __init__(self, database: DeferredDatabase, *, max_verdicts: int, ttl_s: float) -> None:
        self.database = database
        self.max_verdicts = max_verdicts
        self.ttl_s = ttl_s

    def get(self, request_id: str) -> dict[str, Any] | None:
        """The verdict for `request_id` (the MQTT payload), or None if there is none (yet)."""
        with self.database.read("get verdict") as db:
            row = db.execute("SELECT body FROM verdicts WHERE request_id = ?", (request_id,)).fetchone()
        return None if row is None else dict(json.loads(row[0]))

    def undelivered(self, limit: int) -> list[tuple[str, dict[str, Any], bool, bool]]:
        """(request_id, payload, published, recorded) of verdicts with a side effect still to do, oldest first."""
        with self.database.read("list undelivered verdicts") as db:
            rows = db.execute(
                "SELECT request_id, body, published, recorded FROM verdicts "
                "WHERE published = 0 OR recorded = 0 ORDER BY created LIMIT ?",
                (limit,),
            ).fetchall()
        return [(r[0], json.loads(r[1]), bool(r[2]), bool(r[3])) for r in rows]

    def mark(self, request_id: str, *, published: bool = False, recorded: bool = False) -> None:
        """Record that the MQTT event was acknowledged and/or the telemetry record committed."""
        with self.database.transaction("mark verdict") as db:
            if published:
                db.execute("UPDATE verdicts SET published = 1 WHERE request_id = ?", (request_id,))
            if recorded:
                db.execute("UPDATE verdicts SET recorded = 1 WHERE request_id = ?", (request_id,))

    def pending_publish(self) -> int:
        with self.database.read("count unpublished") as db:
            return int(db.execute("SELECT COUNT(*) FROM verdicts WHERE published = 0").fetchone()[0])

    def count(self) -> int:
        with self.database.read("count verdicts") as db:
            return int(db.execute("SELECT COUNT(*) FROM verdicts").fetchone()[0])

    def prune(self, now: float) -> int:
        """Delete delivered verdicts past the TTL or beyond `max_verdicts` (oldest first); if
        undelivered ones alone exceed the bound, the oldest go too, counted as dropped_verdict."""
        with self.database.transaction("prune verdicts") as db:
            gone = db.execute(
                "DELETE FROM verdicts WHERE created < ? AND published = 1 AND recorded = 1",
                (now - self.ttl_s,),
            ).rowcount
            over = int(db.execute("SELECT COUNT(*) FROM verdicts").fetchone()[0]) - self.max_verdicts
            if over > 0:
                gone += db.execute(
                    "DELETE FROM verdicts WHERE request_id IN (SELECT request_id FROM verdicts "
                    "WHERE published = 1 AND recorded = 1 ORDER BY created LIMIT ?)",
                    (over,),
                ).rowcount
                over = int(db.execute("SELECT COUNT(*) FROM verdicts").fetchone()[0]) - self.max_verdicts
            if over > 0:
                lost = db.execute(
                    "DELETE FROM verdicts WHERE request_id IN "
                    "(SELECT request_id FROM verdicts ORDER BY created LIMIT ?)",
                    (over,),
                ).rowcount
                add_counter(db, "dropped_verdict", lost)
                log.warning("deferred: %d undelivered verdicts dropped (over max_verdicts)", lost)
                gone += lost
        return max(gone, 0)
