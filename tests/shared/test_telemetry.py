"""The telemetry wire format: round trip, versioning and refusal of what does not fit."""

from __future__ import annotations

import json

import pytest

from edgecascade.shared.errors import ProtocolError
from edgecascade.shared.telemetry import PRIORITY, SCHEMA_VERSION, RecordKind, decode_batch, encode_batch

INFERENCE = json.dumps(
    {"model": "m", "model_version": "1", "source": "edge", "confidence": 0.9, "label": "3",
     "latency_ms": 0.2, "escalated": False, "degraded": False, "reason": "confident"}
)  # fmt: skip


def test_round_trip_keeps_every_field() -> None:
    payload = encode_batch("dev-1", [(7, 1717.5, "inference", INFERENCE), (8, 1718.0, "event", '{"a": [1]}')])
    batch = decode_batch(payload, "dev-1")
    assert batch.v == SCHEMA_VERSION and batch.device == "dev-1"
    assert [(r.seq, r.ts, r.kind) for r in batch.records] == [
        (7, 1717.5, RecordKind.INFERENCE),
        (8, 1718.0, "event"),
    ]
    assert batch.records[0].body == json.loads(INFERENCE) and batch.records[1].body == {"a": [1]}


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        (b"\x00garbage", "payload"),
        (b'"a string"', "payload"),
        (json.dumps({"v": 2, "device": "d", "records": []}).encode(), "v"),
        (json.dumps({"v": 1, "device": "d", "records": []}).encode(), "records"),
        (encode_batch("d", [(1, 1.0, "inference", '{"label": "3"}')]), "model"),
        (encode_batch("d", [(1, 1.0, "gossip", "{}")]), "records.0.kind"),
        (encode_batch("intruder", [(1, 1.0, "event", "{}")]), "device"),
    ],
)
def test_refuses_what_does_not_fit(payload: bytes, field: str) -> None:
    with pytest.raises(ProtocolError) as err:
        decode_batch(payload, "d")
    assert err.value.field == field


def test_every_kind_has_a_priority_and_routine_records_go_first() -> None:
    assert set(PRIORITY) == set(RecordKind)
    assert min(PRIORITY, key=PRIORITY.__getitem__) == RecordKind.INFERENCE
    assert max(PRIORITY, key=PRIORITY.__getitem__) == RecordKind.DROPS
