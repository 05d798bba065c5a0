"""Telemetry records and their wire format, shared by the device (edge/telemetry) and the
ingester (cloud/ingest).

Wire format, version 1 (`SCHEMA_VERSION`): one MQTT message is one UTF-8 JSON batch

    {"v": 1, "device": "rpi4-0001", "records": [
        {"seq": 17, "ts": 1717000000.123, "kind": "inference", "body": {...}}, ...]}

published at QoS 1 on `Topics(fleet).telemetry(device)`. Everything is in the payload (no
MQTT 5 user properties), so MQTT 3.1.1 and 5 carry it alike. `seq` is per device, strictly
increasing and never reused, so (device, seq) identifies a record and the cloud stores each
one once however often it is delivered. A reader refuses a batch whose `v` it does not know.

Delivery is confirmed end to end, never by the broker: once the ingester has committed a
batch it publishes the sequence numbers it holds (shared/telemetry_ack.py, QoS 1) on
`Topics(fleet).telemetry_ack(device)`, and only then does the device delete those records.
A broker's PUBACK only says the broker has the message in memory.

A record that does not fit (NaN, a sequence number past 2**63 - 1, an unknown kind, a body
off its schema) does not spoil its batch: `decode_batch` returns it among `rejected`, the
ingester stores it in a dead-letter table with the reason and acknowledges it like the rest.
`encode_body` applies the same rules on the device, so its own records always fit.

Record kinds and their priority (higher survives eviction from a full device buffer longer):

    0  inference      routine per-request records (sampled; evicted first)
    1  event          camera/video detections
    2  hard_case      hard examples kept for retraining (only with an explicit profile option)
    2  verdict        late cloud verdicts for deferred hard cases
    3  update_status  model-update state changes
    3  metrics        per-interval counters and histograms
    4  drops          cumulative count of evicted records (never evicted by size)
"""

import hashlib
import json
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from edgecascade.shared.errors import ProtocolError
from edgecascade.shared.json_values import check_string, check_value

SCHEMA_VERSION = 1
MAX_SEQ = 2**63 - 1  # what BIGINT and SQLite INTEGER hold
#: Limits a device keeps and an ingester enforces (its --max-payload-kb may raise the last).
MAX_BODY_BYTES = 512 * 1024
MAX_RECORDS = 5000
MAX_DEVICE_ID = 128
MAX_PAYLOAD_BYTES = 1024 * 1024
DEAD_LETTER_EXCERPT = 2000


class RecordKind(StrEnum):
    INFERENCE = "inference"
    EVENT = "event"
    HARD_CASE = "hard_case"
    VERDICT = "verdict"
    UPDATE_STATUS = "update_status"
    METRICS = "metrics"
    DROPS = "drops"


#: Eviction order: the lowest number goes first, oldest first within a class.
PRIORITY: dict[RecordKind, int] = {
    RecordKind.INFERENCE: 0,
    RecordKind.EVENT: 1,
    RecordKind.HARD_CASE: 2,
    RecordKind.VERDICT: 2,
    RecordKind.UPDATE_STATUS: 3,
    RecordKind.METRICS: 3,
    RecordKind.DROPS: 4,
}

#: Latency histogram bucket upper bounds in milliseconds (the last bucket is everything above).
LATENCY_BUCKETS_MS: tuple[float, ...] = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000)


class _Body(BaseModel):
    # strict: the wire carries JSON numbers and booleans, never "12" or "NaN" as text, which
    # lax validation would accept while the raw body (what is stored) keeps the text.
    model_config = ConfigDict(extra="forbid", protected_namespaces=(), strict=True)


class InferenceBody(_Body):
    """One answered request. No raw input and no features."""

    model: str = Field(description="Model that answered (edge model for edge answers).")
    model_version: str = Field(description="Its version.")
    source: str = Field(description="edge, cloud, table or cache.")
    confidence: float
    label: str
    latency_ms: float
    escalated: bool
    degraded: bool
    reason: str
    request_id: str | None = None
    served_model: str | None = Field(
        None,
        description="The device's served model ([[models]] name) the request was for; None in "
        "records of agents from before per-model telemetry.",
    )
    served_model_version: str | None = Field(
        None, description="Version of that model on the device (None for table and cache answers)."
    )
    task: str | None = Field(None, description="Its task kind: classification, detection or tensor.")


class HardCaseBody(InferenceBody):
    """A hard example for retraining: the inference plus its encoded features (and raw input,
    base64, when the profile allows it)."""

    features: list[float]
    raw_b64: str | None = None


class MetricsBody(_Body):
    """Aggregates over [start, end): every request counts here even when routine records are sampled."""

    start: float
    end: float
    requests: int
    by_source: dict[str, int]
    escalated: int
    degraded: int
    latency_p50_ms: float | None
    latency_p99_ms: float | None
    latency_buckets: list[int] = Field(description="Counts per LATENCY_BUCKETS_MS bucket, plus overflow.")
    buffer_records: int
    buffer_bytes: int
    dropped_total: int
    counters: dict[str, float] = Field(
        default_factory=dict,
        description="The agent's own counters at the interval's end: lookup table and answer-cache hits, "
        "budget refusals, the adaptive threshold and its achieved rate, camera frames.",
    )


class DropsBody(_Body):
    """Cumulative (since the buffer was created) evicted records per kind and reason."""

    total: int
    by_kind: dict[str, int]
    by_reason: dict[str, int]


class VerdictBody(_Body):
    """A late cloud verdict on a deferred hard case, matched to the original request id."""

    request_id: str
    edge_label: str
    edge_confidence: float
    cloud_label: str
    cloud_confidence: float
    cloud_model: str
    cloud_model_version: str
    agree: bool
    queued_at: float = Field(description="Unix time the case was queued on the device.")
    answered_at: float = Field(description="Unix time the cloud's answer arrived.")


BODY_MODELS: dict[RecordKind, type[_Body]] = {
    RecordKind.INFERENCE: InferenceBody,
    RecordKind.HARD_CASE: HardCaseBody,
    RecordKind.VERDICT: VerdictBody,
    RecordKind.METRICS: MetricsBody,
    RecordKind.DROPS: DropsBody,
}


class TelemetryRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")

    seq: int = Field(
        ge=1, le=MAX_SEQ, strict=True, description="Per-device sequence number, strictly increasing."
    )
    ts: float = Field(allow_inf_nan=False, strict=True, description="Unix time the record was made.")
    kind: RecordKind
    body: dict[str, Any]


@dataclass(frozen=True)
class RejectedRecord:
    """A record of a valid batch that cannot be stored; it goes to the dead-letter table."""

    seq: int | None  # None when the record has no usable sequence number
    kind: str | None  # None unless a known RecordKind
    reason: str
    record: str  # the record as JSON, cut to DEAD_LETTER_EXCERPT characters
    # What the ingester's dead-letter identity is made of (cloud/ingest/store.py): `record`
    # is cut, so two records that differ only past the cut would look alike there.
    index: int = -1  # its position in the batch; -1 when not decoded from a payload
    digest: str = ""  # sha256 of the whole record as canonical JSON; "" if it cannot be written


@dataclass(frozen=True)
class TelemetryBatch:
    """A decoded batch: the records to store and the ones refused one by one."""

    v: int
    device: str
    records: list[TelemetryRecord]
    rejected: list[RejectedRecord] = field(default_factory=list)

    def settled_seqs(self) -> list[int]:
        """Every sequence number the cloud holds once this batch is stored (dead letters included):
        what the ingester acknowledges to the device."""
        return [r.seq for r in self.records] + [r.seq for r in self.rejected if r.seq is not None]


def encode_body(kind: RecordKind, body: dict[str, Any]) -> str:
    """A record body as the device buffer stores it. Raises ProtocolError for a body the cloud
    would refuse: a non-finite number, a too-large integer, bad text, too deep, too big, or not
    its kind's schema. The device calls this, so NaN or Infinity never enter telemetry."""
    check_value(body, "body")
    model = BODY_MODELS.get(kind)
    if model is not None:
        try:
            model.model_validate(body)
        except ValidationError as exc:
            raise _protocol_error(exc, "body") from None
    text = json.dumps(body, allow_nan=False)
    if len(text) > MAX_BODY_BYTES:
        raise ProtocolError(f"{len(text)} bytes, over the {MAX_BODY_BYTES}-byte limit", field="body")
    return text


def encode_batch(device: str, records: list[tuple[int, float, str, str]]) -> bytes:
    """(seq, ts, kind, body_json) rows, as the device buffer stores them -> one payload.
    Bodies are stored as JSON already, so they are spliced in rather than parsed again."""
    parts = [
        f'{{"seq":{seq},"ts":{ts!r},"kind":{json.dumps(kind)},"body":{body}}}'
        for seq, ts, kind, body in records
    ]
    head = json.dumps({"v": SCHEMA_VERSION, "device": device})[:-1]
    return f'{head},"records":[{",".join(parts)}]}}'.encode()


def decode_batch(
    payload: bytes, topic_device: str | None = None, *, max_bytes: int = MAX_PAYLOAD_BYTES
) -> TelemetryBatch:
    """Parse and validate a payload. Raises ProtocolError (the whole message is refused) when
    it is too big, not UTF-8 JSON, nested too deeply, of an unknown version, not a batch, or
    from a device other than the one in the topic (a device may only speak for itself).
    A record that does not fit (bad sequence number or time, unknown kind, a body that is not
    its kind's schema or holds NaN) is returned in `rejected` with its reason; the rest is kept."""
    if len(payload) > max_bytes:
        raise ProtocolError(f"{len(payload)} bytes, over the {max_bytes}-byte limit", field="payload")
    try:
        raw = json.loads(payload.decode("utf-8"))
    except UnicodeDecodeError:
        raise ProtocolError("not UTF-8 text", field="payload") from None
    except RecursionError:
        # The C parser recurses per nesting level; this is how it reports running out of stack.
        raise ProtocolError("JSON nested too deeply", field="payload") from None
    except ValueError as exc:  # JSONDecodeError, or an integer too long to convert
        raise ProtocolError(f"not JSON: {str(exc)[:120]}", field="payload") from None
    if not isinstance(raw, dict):
        raise ProtocolError("expected a JSON object", field="payload")
    version = raw.get("v")
    if type(version) is not int or version != SCHEMA_VERSION:
        raise ProtocolError(f"unsupported telemetry version {str(version)[:20]!r}", field="v")
    extra = set(raw) - {"v", "device", "records"}
    if extra:
        raise ProtocolError(f"unexpected fields {sorted(str(k)[:40] for k in extra)[:5]}", field="payload")
    device = raw.get("device")
    if not isinstance(device, str) or not 1 <= len(device) <= MAX_DEVICE_ID:
        raise ProtocolError(f"expected a device id of 1 to {MAX_DEVICE_ID} characters", field="device")
    check_string(device, "device")
    if topic_device is not None and device != topic_device:
        raise ProtocolError(f"device {device!r} published on {topic_device!r}'s topic", field="device")
    items = raw.get("records")
    if not isinstance(items, list) or not 1 <= len(items) <= MAX_RECORDS:
        raise ProtocolError(f"expected a list of 1 to {MAX_RECORDS} records", field="records")
    records: list[TelemetryRecord] = []
    rejected: list[RejectedRecord] = []
    for i, item in enumerate(items):
        try:
            records.append(_record(item, f"records.{i}"))
        except ProtocolError as exc:
            rejected.append(_rejected(item, str(exc), i))
    return TelemetryBatch(SCHEMA_VERSION, device, records, rejected)


def _record(item: Any, where: str) -> TelemetryRecord:
    if not isinstance(item, dict):
        raise ProtocolError("expected a JSON object", field=where)
    # Checked before pydantic sees it: depth first (nothing below recurses into the body).
    check_value(item.get("body"), f"{where}.body")
    try:
        record = TelemetryRecord.model_validate(item)
        model = BODY_MODELS.get(record.kind)
        if model is not None:
            model.model_validate(record.body)
    except ValidationError as exc:
        raise _protocol_error(exc, where) from None
    return record


_KINDS = frozenset(k.value for k in RecordKind)


def _rejected(item: Any, reason: str, index: int) -> RejectedRecord:
    seq = item.get("seq") if isinstance(item, dict) else None
    kind = item.get("kind") if isinstance(item, dict) else None
    try:
        excerpt = json.dumps(item)[:DEAD_LETTER_EXCERPT]
        # Sorted keys, no spaces: the same record re-encoded by its sender digests alike.
        canonical = json.dumps(item, sort_keys=True, separators=(",", ":"))
        digest = hashlib.sha256(canonical.encode()).hexdigest()
    except (RecursionError, ValueError):
        excerpt, digest = "(not kept: cannot be written back as JSON)", ""
    return RejectedRecord(
        seq=seq if type(seq) is int and 1 <= seq <= MAX_SEQ else None,
        kind=kind if isinstance(kind, str) and kind in _KINDS else None,
        reason=reason[:500],
        record=excerpt,
        index=index,
        digest=digest,
    )


def _protocol_error(exc: ValidationError, where: str) -> ProtocolError:
    first = exc.errors()[0]
    loc = ".".join(str(p) for p in first["loc"])
    return ProtocolError(first["msg"], field=f"{where}.{loc}" if loc else where)
