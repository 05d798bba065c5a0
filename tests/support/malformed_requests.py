"""A corpus of malformed V2 infer requests for the digits models (input `input`, FP32 [N, 64]),
sent to the real cloud API, the real agent API and the agent's MQTT request topic.

Each case names the part of the request at fault (`field`): the answer must be a 4xx whose JSON
error names it (in `field` or in the message). `json_only` cases can travel over MQTT;
`where` limits a case to the servers it applies to."""

from __future__ import annotations

import gzip
import json
import struct
import zlib
from dataclasses import dataclass, field
from typing import Any

FEATURES = 64


@dataclass(frozen=True)
class Case:
    name: str
    body: bytes
    field: str  # what the error must name
    headers: dict[str, str] = field(default_factory=dict)
    where: frozenset[str] = frozenset({"cloud", "agent"})
    json_only: bool = True  # no HTTP header needed: can be sent over MQTT


def _doc(**overrides: Any) -> dict[str, Any]:
    tensor: dict[str, Any] = {"name": "input", "datatype": "FP32", "shape": [1, FEATURES]}
    tensor["data"] = [0.5] * FEATURES
    tensor.update(overrides.pop("tensor", {}))
    doc: dict[str, Any] = {"id": "bad", "inputs": [tensor]}
    doc.update(overrides)
    return doc


def _j(doc: Any) -> bytes:
    return json.dumps(doc).encode()


def _binary(
    header: dict[str, Any], raw: bytes, length: int | str | None = None
) -> tuple[bytes, dict[str, str]]:
    text = json.dumps(header).encode()
    hdr = {
        "Content-Type": "application/octet-stream",
        "Inference-Header-Content-Length": str(length or len(text)),
    }
    return text + raw, hdr


def _binary_case(
    name: str, field_name: str, header: dict[str, Any], raw: bytes, length: int | str | None = None
) -> Case:
    body, hdr = _binary(header, raw, length)
    return Case(name, body, field_name, hdr, json_only=False)


def _tensor_header(size: int, **extra: Any) -> dict[str, Any]:
    tensor = {
        "name": "input",
        "datatype": "FP32",
        "shape": [1, FEATURES],
        "parameters": {"binary_data_size": size},
    }
    tensor.update(extra)
    return {"inputs": [tensor]}


def corpus(*, bomb_bytes: int = 64 << 20) -> list[Case]:
    """Every case; `bomb_bytes` is what the gzip bomb expands to (over any body limit here)."""
    good_raw = struct.pack(f"<{FEATURES}f", *([0.5] * FEATURES))
    deep = 100_000
    cases = [
        Case("not json", b"not json", "body"),
        Case("empty body", b"", "body"),
        Case("json array", b"[]", "body"),
        Case("json null", b"null", "body"),
        Case("truncated json", b'{"inputs": [{"name": "input"', "body"),
        Case("invalid utf-8", b'{"inputs": "\xff\xfe"}', "body"),
        Case(
            "deeply nested data",
            b'{"inputs":[{"name":"input","datatype":"FP32","shape":[1],"data":'
            + b"[" * deep
            + b"]" * deep
            + b"}]}",
            "body",  # the JSON parser's recursion limit refuses it, before any tensor
        ),
        Case(
            "deeply nested parameters",
            b'{"parameters":' + b'{"a":' * deep + b"1" + b"}" * deep + b',"inputs":[]}',
            "body",
        ),
        Case("no inputs", _j({"id": "x"}), "inputs"),
        Case("inputs not a list", _j({"inputs": {"name": "input"}}), "inputs"),
        Case(
            "input without name",
            _j({"inputs": [{"datatype": "FP32", "shape": [1, 64], "data": [0] * 64}]}),
            "inputs[0].name",
        ),
        Case("input without datatype", _j(_doc(tensor={"datatype": None})), "inputs[0].datatype"),
        Case("input without shape", _j(_doc(tensor={"shape": None})), "inputs[0].shape"),
        Case("shape is a string", _j(_doc(tensor={"shape": "1,64"})), "inputs[0].shape"),
        Case("shape has a float", _j(_doc(tensor={"shape": [1.5, 64]})), "inputs[0].shape"),
        Case("shape has a bool", _j(_doc(tensor={"shape": [True, 64]})), "inputs[0].shape"),
        Case("negative dimension", _j(_doc(tensor={"shape": [-1, 64]})), "inputs[0].shape"),
        Case(
            "zero-size absurd shape",
            _j(_doc(tensor={"shape": [0, 9223372036854775807], "data": []})),
            "inputs[0].shape",
        ),
        Case("zero-size shape", _j(_doc(tensor={"shape": [0, 64], "data": []})), "inputs[0].shape"),
        Case("65 dimensions", _j(_doc(tensor={"shape": [1] * 65, "data": [0.5]})), "inputs[0].shape"),
        Case("dimension of 2**70", _j(_doc(tensor={"shape": [2**70, 64]})), "inputs[0].shape"),
        Case("product over int64", _j(_doc(tensor={"shape": [2**40, 2**40]})), "inputs[0].shape"),
        Case("too few values", _j(_doc(tensor={"data": [0.5] * 63})), "inputs[0].data"),
        Case("too many values", _j(_doc(tensor={"data": [0.5] * 65})), "inputs[0].data"),
        Case("no data", _j(_doc(tensor={"data": None})), "inputs[0].data"),
        Case("unknown datatype", _j(_doc(tensor={"datatype": "FLOAT"})), "inputs[0].datatype"),
        Case("FP64 for FP32", _j(_doc(tensor={"datatype": "FP64"})), "inputs[0].datatype"),
        Case(
            "INT32 for FP32", _j(_doc(tensor={"datatype": "INT32", "data": [1] * 64})), "inputs[0].datatype"
        ),
        Case(
            "BOOL for FP32", _j(_doc(tensor={"datatype": "BOOL", "data": [True] * 64})), "inputs[0].datatype"
        ),
        Case("floats for INT32", _j(_doc(tensor={"datatype": "INT32"})), "inputs[0].data"),
        Case("strings for FP32", _j(_doc(tensor={"data": ["a"] * 64})), "inputs[0].data"),
        Case("bools for FP32", _j(_doc(tensor={"data": [True] * 64})), "inputs[0].data"),
        Case("NaN literal", _j(_doc()).replace(b"0.5", b"NaN", 1), "inputs[0].data"),
        Case("Infinity literal", _j(_doc()).replace(b"0.5", b"Infinity", 1), "inputs[0].data"),
        Case("1e999", _j(_doc()).replace(b"0.5", b"1e999", 1), "inputs[0].data"),
        Case("int beyond int64", _j(_doc(tensor={"data": [10**30] + [0] * 63})), "inputs[0].data"),
        Case(
            "ragged nested data",
            _j(_doc(tensor={"shape": [2, 2], "data": [[1.0, 2.0], [3.0]]})),
            "inputs[0].data",
        ),
        Case("input twice", _j({"inputs": [_doc()["inputs"][0], _doc()["inputs"][0]]}), "inputs[1].name"),
        Case("unknown output", _j(_doc(outputs=[{"name": "nope"}])), "outputs[0].name"),
        Case(
            "output binary_data not bool",
            _j(_doc(outputs=[{"name": "probabilities", "parameters": {"binary_data": "yes"}}])),
            "outputs[0].parameters.binary_data",
        ),
        Case(
            "binary_data_output not bool",
            _j(_doc(parameters={"binary_data_output": 1})),
            "parameters.binary_data_output",
        ),
        Case("id is a number", _j(_doc(id=123)), "id"),
        Case("parameters is a list", _j(_doc(parameters=[1, 2])), "parameters"),
        Case(
            "empty idempotency key",
            _j(_doc(parameters={"idempotency_key": ""})),
            "parameters.idempotency_key",
            where=frozenset({"cloud"}),
        ),
        Case(
            "raw input not base64",
            _j(_doc(parameters={"raw_input_b64": "%%%"})),
            "parameters.raw_input_b64",
            where=frozenset({"cloud"}),
        ),
        Case(
            "scalar shape on the agent",
            _j(_doc(tensor={"shape": [], "data": [0.5]})),
            "inputs[0].shape",
            where=frozenset({"agent"}),
        ),
        Case(
            "image that is not one",
            _j({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": ["not an image"]}]}),
            "inputs[0].data",
            where=frozenset({"agent"}),
        ),
        _binary_case(
            "header length past the body",
            "Inference-Header-Content-Length",
            _tensor_header(256),
            good_raw,
            length=10_000,
        ),
        _binary_case(
            "header length not a number",
            "Inference-Header-Content-Length",
            _tensor_header(256),
            good_raw,
            length="ten",
        ),
        _binary_case(
            "header length negative",
            "Inference-Header-Content-Length",
            _tensor_header(256),
            good_raw,
            length=-5,
        ),
        _binary_case(
            "binary size past the body",
            "inputs[0].parameters.binary_data_size",
            _tensor_header(4096),
            good_raw,
        ),
        _binary_case(
            "binary size negative", "inputs[0].parameters.binary_data_size", _tensor_header(-1), good_raw
        ),
        _binary_case(
            "binary size a string", "inputs[0].parameters.binary_data_size", _tensor_header("256"), good_raw
        ),
        _binary_case(
            "binary size short of the shape",
            "inputs[0].parameters.binary_data_size",
            _tensor_header(128),
            good_raw[:128],
        ),
        _binary_case("bytes after the last tensor", "body", _tensor_header(256), good_raw + b"junk"),
        _binary_case(
            "binary tensor with data too",
            "inputs[0].data",
            {"inputs": [{**_tensor_header(256)["inputs"][0], "data": [0.5] * 64}]},
            good_raw,
        ),
        _binary_case(
            "BOOL byte of 2",
            "inputs[0].parameters.binary_data_size",
            {
                "inputs": [
                    {
                        "name": "input",
                        "datatype": "BOOL",
                        "shape": [1, 64],
                        "parameters": {"binary_data_size": 64},
                    }
                ]
            },
            b"\x02" * 64,
        ),
        Case(
            "gzip header on plain JSON",
            _j(_doc()),
            "Content-Encoding",
            {"Content-Encoding": "gzip"},
            json_only=False,
        ),
        Case(
            "unknown content encoding",
            gzip.compress(_j(_doc())),
            "Content-Encoding",
            {"Content-Encoding": "br"},
            json_only=False,
        ),
        Case(
            "truncated gzip",
            gzip.compress(_j(_doc()))[:-12],
            "Content-Encoding",
            {"Content-Encoding": "gzip"},
            json_only=False,
        ),
        Case(
            "gzip bomb", _bomb(bomb_bytes), "Content-Encoding", {"Content-Encoding": "gzip"}, json_only=False
        ),
    ]
    return cases


def _bomb(size: int) -> bytes:
    """gzip of `size` zero bytes (~1000x smaller), built a chunk at a time."""
    out = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    chunk = b"\0" * (1 << 20)
    parts = [out.compress(chunk) for _ in range(size >> 20)]
    parts.append(out.flush())
    return b"".join(parts)


def named_in(answer: dict[str, Any], field_name: str) -> bool:
    """True when the JSON error names `field_name`, in `field` or in the message."""
    return field_name in str(answer.get("field") or "") or field_name in str(answer.get("error", ""))
