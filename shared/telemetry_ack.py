"""The ingester's acknowledgement of stored telemetry, the only thing that lets a device
delete a record from its buffer (see shared/telemetry.py for the batch it answers).

Published QoS 1 on `Topics(fleet).telemetry_ack(device)` after the batch is committed:

    {"v": 1, "device": "rpi4-0001", "stored": [[17, 216], [300, 300]]}

Every record in those inclusive ranges is in the cloud's store or its dead-letter table."""

from __future__ import annotations

import json

from edgecascade.shared.errors import ProtocolError
from edgecascade.shared.telemetry import MAX_PAYLOAD_BYTES, MAX_SEQ, SCHEMA_VERSION


def encode_ack(device: str, seqs: list[int]) -> bytes:
    """`{"v": 1, "device": ..., "stored": [[first, last], ...]}`: every record in these inclusive
    ranges is stored in the cloud (or in its dead-letter table), so the device may delete it."""
    ranges: list[list[int]] = []
    for seq in sorted(set(seqs)):
        if ranges and seq == ranges[-1][1] + 1:
            ranges[-1][1] = seq
        else:
            ranges.append([seq, seq])
    return json.dumps({"v": SCHEMA_VERSION, "device": device, "stored": ranges}).encode()


def decode_ack(payload: bytes, device: str) -> list[tuple[int, int]]:
    """The inclusive seq ranges of an acknowledgement for `device`. Raises ProtocolError."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise ProtocolError("acknowledgement too big", field="payload")
    try:
        raw = json.loads(payload)
    except (RecursionError, ValueError):
        raise ProtocolError("not JSON", field="payload") from None
    if not isinstance(raw, dict) or type(raw.get("v")) is not int or raw.get("v") != SCHEMA_VERSION:
        raise ProtocolError("not a version-1 acknowledgement", field="v")
    if raw.get("device") != device:
        raise ProtocolError("for another device", field="device")
    ranges = raw.get("stored")
    if not isinstance(ranges, list):
        raise ProtocolError("expected a list of [first, last] ranges", field="stored")
    out = []
    for pair in ranges:
        if (
            not isinstance(pair, list)
            or len(pair) != 2
            or not all(type(x) is int and 1 <= x <= MAX_SEQ for x in pair)
            or pair[0] > pair[1]
        ):
            raise ProtocolError("expected [first, last] with 1 <= first <= last < 2**63", field="stored")
        out.append((pair[0], pair[1]))
    return out
