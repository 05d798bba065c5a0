"""Telemetry records and their wire format, shared by the device (edge/telemetry) and the
ingester (cloud/ingest).

Wire format, version 1 (`SCHEMA_VERSION`): one MQTT message is one UTF-8 JSON batch

    {"v": 1, "device": "rpi4-0001", "records": [
        {"seq": 17, "ts": 1717000000.123, "kind": "inference", "body": {...}}, ...]}

published at QoS 1 on `Topics(fleet).telemetry(device)`. Everything is in the payload (no
MQTT 5 user properties), so MQTT 3.1.1 and 5 carry it alike. `seq` is per device, strictly
increasing and never reused, so (device, seq) identifies a record and the cloud stores each
one once however often it is delivered. A reader refuses a batch whose `v` it does not know.

Record kinds and their priority (higher survives eviction from a full device buffer longer):

    0  inference      routine per-request records (sampled; evicted first)
    1  event          camera/video detections
    2  hard_case      hard examples kept for retraining (only with an explicit profile option)
    2  verdict        late cloud verdicts for deferred hard cases
    3  update_status  model-update state changes
    3  metrics        per-interval counters and histograms
    4  drops          cumulative count of evicted records (never evicted by size)
"""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from edgecascade.shared.errors import ProtocolError

SCHEMA_VERSION = 1


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
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


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

    seq: int = Field(ge=1, description="Per-device sequence number, strictly increasing.")
    ts: float = Field(description="Unix time the record was made.")
    kind: RecordKind
    body: dict[str, Any]


class TelemetryBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    v: int
    device: str = Field(min_length=1)
    records: list[TelemetryRecord] = Field(min_length=1)


def encode_batch(device: str, records: list[tuple[int, float, str, str]]) -> bytes:
    """(seq, ts, kind, body_json) rows, as the device buffer stores them -> one payload.
    Bodies are stored as JSON already, so they are spliced in rather than parsed again."""
    parts = [
        f'{{"seq":{seq},"ts":{ts!r},"kind":{json.dumps(kind)},"body":{body}}}'
        for seq, ts, kind, body in records
    ]
    head = json.dumps({"v": SCHEMA_VERSION, "device": device})[:-1]
    return f'{head},"records":[{",".join(parts)}]}}'.encode()


def decode_batch(payload: bytes, topic_device: str | None = None) -> TelemetryBatch:
    """Parse and validate a payload. Raises ProtocolError naming what is wrong: not JSON, an
    unknown version, a record or body that does not fit its kind, or a device id that differs
    from the one in the topic (a device may only speak for itself)."""
    try:
        raw = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProtocolError(f"not JSON: {exc}", field="payload") from None
    if not isinstance(raw, dict):
        raise ProtocolError("expected a JSON object", field="payload")
    if raw.get("v") != SCHEMA_VERSION:
        raise ProtocolError(f"unsupported telemetry version {raw.get('v')!r}", field="v")
    try:
        batch = TelemetryBatch.model_validate(raw)
        for record in batch.records:
            model = BODY_MODELS.get(record.kind)
            if model is not None:
                model.model_validate(record.body)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ProtocolError(first["msg"], field=".".join(str(p) for p in first["loc"])) from None
    if topic_device is not None and batch.device != topic_device:
        raise ProtocolError(f"device {batch.device!r} published on {topic_device!r}'s topic", field="device")
    return batch
