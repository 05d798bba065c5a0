"""The telemetry wire format: round trip, versioning, refusal of what is not a batch, and
rejection, one by one, of records that do not fit (NaN, 2**63, bad text, too deep)."""

from __future__ import annotations

import json
import re

import pytest

from edgecascade.shared.errors import ProtocolError
from edgecascade.shared.telemetry import (
    MAX_BODY_BYTES,
    MAX_PAYLOAD_BYTES,
    PRIORITY,
    SCHEMA_VERSION,
    RecordKind,
    decode_batch,
    encode_batch,
    encode_body,
)
from edgecascade.shared.telemetry_ack import decode_ack, encode_ack

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
        (b"\xff\xfe{}", "payload"),
        (b"[" * 100_000, "payload"),  # nested past the parser's recursion limit
        (b"1" * 5000, "payload"),  # an integer too long to convert
        (json.dumps({"v": 2, "device": "d", "records": []}).encode(), "v"),
        (json.dumps({"v": True, "device": "d", "records": [{}]}).encode(), "v"),
        (json.dumps({"v": 1, "device": "d", "records": []}).encode(), "records"),
        (json.dumps({"v": 1, "device": "d", "records": {}}).encode(), "records"),
        (json.dumps({"v": 1, "device": "d", "records": [{}], "x": 1}).encode(), "payload"),
        (json.dumps({"v": 1, "device": 7, "records": [{}]}).encode(), "device"),
        (json.dumps({"v": 1, "device": "d\u0000", "records": [{}]}).encode(), "device"),
        (encode_batch("intruder", [(1, 1.0, "event", "{}")]), "device"),
        (b" " * (MAX_PAYLOAD_BYTES + 1), "payload"),
    ],
)
def test_refuses_a_payload_that_is_not_a_batch(payload: bytes, field: str) -> None:
    with pytest.raises(ProtocolError) as err:
        decode_batch(payload, "d")
    assert err.value.field == field


def _nested(depth: int) -> dict[str, object]:
    body: dict[str, object] = {}
    for _ in range(depth):
        body = {"a": body}
    return body


def _payload(*records: object) -> bytes:
    return json.dumps({"v": 1, "device": "d", "records": list(records)}).encode()


def _rec(seq: object = 1, ts: object = 1.0, kind: object = "event", body: object = None) -> dict[str, object]:
    return {"seq": seq, "ts": ts, "kind": kind, "body": {} if body is None else body}


@pytest.mark.parametrize(
    ("record", "reason", "seq"),
    [
        (_rec(seq=2**63), "records.0.seq: Input should be less than or equal to 9223372036854775807", None),
        (_rec(seq=0), "records.0.seq: Input should be greater than or equal to 1", None),
        (_rec(seq="5"), "records.0.seq: Input should be a valid integer", None),
        (_rec(seq=True), "records.0.seq: Input should be a valid integer", None),
        (_rec(ts=float("nan")), "records.0.ts: Input should be a finite number", 1),
        (_rec(ts="1.5"), "records.0.ts: Input should be a valid number", 1),
        (_rec(body={"x": float("nan")}), "records.0.body.x: nan is not a finite number", 1),
        (_rec(body={"x": [1, float("-inf")]}), "records.0.body.x.1: -inf is not a finite number", 1),
        (_rec(body={"x": 2**64}), "records.0.body.x: integer does not fit in 64 bits", 1),
        (_rec(body={"x": "a\x00b"}), "records.0.body.x: holds a NUL character (U+0000)", 1),
        (_rec(body={"\ud800": 1}), "records.0.body.<key>: holds a lone UTF-16 surrogate", 1),
        (_rec(body=_nested(40)), "nested deeper than 32 levels", 1),
        (_rec(kind="gossip"), "records.0.kind: Input should be", 1),
        (_rec(kind="inference", body={"label": "3"}), "records.0.model: Field required", 1),
        ("not a record", "records.0: expected a JSON object", None),
        ({**_rec(), "extra": 1}, "records.0.extra: Extra inputs are not permitted", 1),
    ],
)
def test_a_record_that_does_not_fit_is_rejected_alone(record: object, reason: str, seq: int | None) -> None:
    batch = decode_batch(_payload(record, _rec(seq=9)), "d")
    assert [r.seq for r in batch.records] == [9]  # the good record of the batch is kept
    assert len(batch.rejected) == 1
    rejected = batch.rejected[0]
    assert reason in rejected.reason and rejected.seq == seq
    assert batch.settled_seqs() == [9] + ([seq] if seq else [])
    assert len(rejected.record) <= 2000


def test_device_side_encoding_refuses_what_the_cloud_would() -> None:
    assert json.loads(encode_body(RecordKind.EVENT, {"camera": "c", "score": 0.5})) == {
        "camera": "c",
        "score": 0.5,
    }
    bad = [
        ({"score": float("nan")}, "body.score: nan is not a finite number"),
        ({"score": float("inf")}, "body.score: inf is not a finite number"),
        ({"n": 2**63}, "body.n: integer does not fit in 64 bits"),
        (_nested(33), "nested deeper than 32 levels"),
        ({"blob": "x" * (MAX_BODY_BYTES + 1)}, "over the 524288-byte limit"),
    ]
    for body, message in bad:
        with pytest.raises(ProtocolError, match=re.escape(message)):
            encode_body(RecordKind.EVENT, body)
    inference = json.loads(INFERENCE)
    with pytest.raises(ProtocolError, match="body.confidence"):
        encode_body(RecordKind.INFERENCE, {**inference, "confidence": float("nan")})
    with pytest.raises(ProtocolError, match="body.model"):
        encode_body(RecordKind.INFERENCE, {"label": "3"})


def test_acknowledgement_round_trip_and_refusals() -> None:
    payload = encode_ack("d", [5, 1, 2, 3, 9, 8, 2])
    assert json.loads(payload)["stored"] == [[1, 3], [5, 5], [8, 9]]
    assert decode_ack(payload, "d") == [(1, 3), (5, 5), (8, 9)]
    for bad, field in [
        (encode_ack("other", [1]), "device"),
        (b"{", "payload"),
        (json.dumps({"v": 1, "device": "d", "stored": [[3, 1]]}).encode(), "stored"),
        (json.dumps({"v": 1, "device": "d", "stored": [[0, 1]]}).encode(), "stored"),
        (json.dumps({"v": 1, "device": "d", "stored": [[1, 2**63]]}).encode(), "stored"),
        (json.dumps({"v": 1, "device": "d", "stored": "all"}).encode(), "stored"),
        (json.dumps({"v": 2, "device": "d", "stored": []}).encode(), "v"),
    ]:
        with pytest.raises(ProtocolError) as err:
            decode_ack(bad, "d")
        assert err.value.field == field


def test_every_kind_has_a_priority_and_routine_records_go_first() -> None:
    assert set(PRIORITY) == set(RecordKind)
    assert min(PRIORITY, key=PRIORITY.__getitem__) == RecordKind.INFERENCE
    assert max(PRIORITY, key=PRIORITY.__getitem__) == RecordKind.DROPS
