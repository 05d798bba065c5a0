"""Round trips of every V2 datatype through JSON and the binary extension, and malformed bodies."""

from __future__ import annotations

import json
import zlib

import numpy as np
import pytest

from edgecascade.shared.errors import ProtocolError
from edgecascade.shared.v2 import (
    DATATYPES,
    HEADER_LENGTH,
    RequestedOutput,
    datatype_of,
    decode_infer_request,
    decode_infer_response,
    encode_infer_request,
    encode_infer_response,
)


def sample(datatype: str) -> np.ndarray:
    rng = np.random.default_rng(7)
    if datatype == "BYTES":
        arr = np.empty(6, dtype=object)
        arr[:] = [b"", b"a", "zwölf".encode(), b"x" * 300, b"edge", b"cloud"]
        return arr.reshape(2, 3)
    dtype = DATATYPES[datatype]
    if dtype.kind == "b":
        return rng.integers(0, 2, (2, 3)).astype(bool)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return np.array([[info.min, 0, 1], [info.max, info.max - 1, info.min + 1]], dtype=dtype)
    return rng.standard_normal((2, 3)).astype(dtype)


def assert_same(got: np.ndarray, want: np.ndarray) -> None:
    assert got.dtype == want.dtype
    assert got.shape == want.shape
    assert got.tolist() == want.tolist()


@pytest.mark.parametrize("datatype", list(DATATYPES))
@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_request_round_trip_every_datatype(datatype: str, binary: bool) -> None:
    arr = sample(datatype)
    assert datatype_of(arr) == datatype
    body, headers = encode_infer_request(
        {"x": arr, "y": np.arange(4, dtype=np.int32)}, request_id="r-1", binary=binary, binary_outputs=False
    )
    assert (HEADER_LENGTH in headers) is binary
    req = decode_infer_request(body, headers)
    assert list(req.inputs) == ["x", "y"]
    assert_same(req.inputs["x"], arr)
    assert_same(req.inputs["y"], np.arange(4, dtype=np.int32))
    assert req.id == "r-1"
    assert req.outputs is None
    assert req.binary_output_default is False


@pytest.mark.parametrize("datatype", list(DATATYPES))
@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_response_round_trip_every_datatype(datatype: str, binary: bool) -> None:
    arr = sample(datatype)
    body, headers = encode_infer_response(
        "m",
        "2",
        "id-9",
        {"out": arr, "other": np.ones((1, 2), np.float32)},
        binary_outputs={"out"} if binary else False,
    )
    if binary:
        assert int(headers[HEADER_LENGTH]) < len(body)
        head = json.loads(body[: int(headers[HEADER_LENGTH])])
        assert head["outputs"][0]["parameters"]["binary_data_size"] == len(body) - int(headers[HEADER_LENGTH])
        assert "data" in head["outputs"][1]
    resp = decode_infer_response(body, headers)
    assert (resp.model_name, resp.model_version, resp.id) == ("m", "2", "id-9")
    assert_same(resp.outputs["out"], arr)
    assert_same(resp.outputs["other"], np.ones((1, 2), np.float32))


def test_binary_layout_is_little_endian_with_length_prefixed_bytes() -> None:
    strings = np.array([b"ab", b"c"], dtype=object)
    body, headers = encode_infer_request(
        {"f": np.array([1.0], np.float32), "b": np.array([True, False]), "s": strings}, binary_outputs=False
    )
    n = int(headers[HEADER_LENGTH])
    head = json.loads(body[:n])
    assert [t["parameters"]["binary_data_size"] for t in head["inputs"]] == [4, 2, 4 + 2 + 4 + 1]
    assert body[n:] == b"\x00\x00\x80\x3f" + b"\x01\x00" + b"\x02\x00\x00\x00ab\x01\x00\x00\x00c"


def test_nested_and_flat_json_data_give_the_same_tensor() -> None:
    nested = {"inputs": [{"name": "x", "shape": [2, 2], "datatype": "FP32", "data": [[1, 2], [3, 4.5]]}]}
    flat = {"inputs": [{"name": "x", "shape": [2, 2], "datatype": "FP32", "data": [1, 2, 3, 4.5]}]}
    a = decode_infer_request(json.dumps(nested).encode(), {}).inputs["x"]
    b = decode_infer_request(json.dumps(flat).encode(), {}).inputs["x"]
    assert_same(a, np.array([[1, 2], [3, 4.5]], np.float32))
    assert_same(b, a)


def test_requested_outputs_resolve_binary_per_output_and_by_default() -> None:
    doc = {
        "parameters": {"binary_data_output": True, "idempotency_key": "k1"},
        "inputs": [{"name": "x", "shape": [1], "datatype": "INT64", "data": [3]}],
        "outputs": [{"name": "a"}, {"name": "b", "parameters": {"binary_data": False}}],
    }
    req = decode_infer_request(json.dumps(doc).encode(), {"content-type": "application/json"})
    assert req.outputs == [RequestedOutput("a", True), RequestedOutput("b", False)]
    assert req.binary_output_default is True
    assert req.parameters["idempotency_key"] == "k1"
    body, headers = encode_infer_request({"x": np.zeros(1)}, outputs=["p"], binary_outputs=True)
    assert decode_infer_request(body, headers).outputs == [RequestedOutput("p", True)]
    body, headers = encode_infer_request({"x": np.zeros(1)}, binary=False, binary_outputs=True)
    assert decode_infer_request(body, headers).binary_output_default is True


def test_header_lookup_is_case_insensitive() -> None:
    body, headers = encode_infer_request({"x": np.arange(3, dtype=np.uint16)})
    lower = {k.lower(): v for k, v in headers.items()}
    assert_same(decode_infer_request(body, lower).inputs["x"], np.arange(3, dtype=np.uint16))


def _doc(**tensor: object) -> bytes:
    base: dict[str, object] = {"name": "x", "shape": [2], "datatype": "FP32", "data": [1.0, 2.0]}
    base.update(tensor)
    return json.dumps({"inputs": [base]}).encode()


MALFORMED: list[tuple[str, bytes, dict[str, str], str]] = [
    ("not json", b"{nope", {}, "body"),
    ("json array", b"[1, 2]", {}, "body"),
    ("no inputs", b'{"id": "a"}', {}, "inputs"),
    ("id not string", b'{"id": 5, "inputs": []}', {}, "id"),
    ("shape as string", _doc(shape="2"), {}, "inputs[0].shape"),
    ("shape float", _doc(shape=[2.0]), {}, "inputs[0].shape[0]"),
    ("negative dim", _doc(shape=[-1]), {}, "inputs[0].shape"),
    ("unknown datatype", _doc(datatype="FP8"), {}, "inputs[0].datatype"),
    (
        "missing name",
        json.dumps({"inputs": [{"shape": [1], "datatype": "FP32", "data": [1]}]}).encode(),
        {},
        "inputs[0].name",
    ),
    ("too few values", _doc(data=[1.0]), {}, "inputs[0].data"),
    ("too many values", _doc(data=[1.0, 2.0, 3.0]), {}, "inputs[0].data"),
    ("ragged nesting", _doc(shape=[2, 2], data=[[1, 2], [3]]), {}, "inputs[0].data"),
    ("nested shape differs", _doc(shape=[2, 2], data=[[1, 2, 3, 4]]), {}, "inputs[0].data"),
    ("no data", _doc(data=None), {}, "inputs[0].data"),
    ("strings for FP32", _doc(data=["a", "b"]), {}, "inputs[0].data"),
    ("float for INT32", _doc(datatype="INT32", data=[1.5, 2]), {}, "inputs[0].data"),
    ("out of range INT8", _doc(datatype="INT8", data=[1, 300]), {}, "inputs[0].data"),
    ("number for BOOL", _doc(datatype="BOOL", data=[1, 0]), {}, "inputs[0].data"),
    ("number for BYTES", _doc(datatype="BYTES", data=[1, 2]), {}, "inputs[0].data"),
    ("bad header length", _doc(), {HEADER_LENGTH: "ten"}, HEADER_LENGTH),
    ("header length past body", _doc(), {HEADER_LENGTH: "100000"}, HEADER_LENGTH),
    (
        "binary size past body",
        _doc(data=None, parameters={"binary_data_size": 8}),  # no header: nothing follows the JSON
        {},
        "inputs[0].parameters.binary_data_size",
    ),
    (
        "binary size negative",
        _doc(data=None, parameters={"binary_data_size": -4}),
        {},
        "inputs[0].parameters.binary_data_size",
    ),
    (
        "binary size bool",
        _doc(data=None, parameters={"binary_data_size": True}),
        {},
        "inputs[0].parameters.binary_data_size",
    ),
    ("binary and data", _doc(parameters={"binary_data_size": 0}), {}, "inputs[0].data"),
    (
        "binary_data_output not bool",
        b'{"parameters": {"binary_data_output": "yes"}, "inputs": []}',
        {},
        "parameters.binary_data_output",
    ),
    (
        "binary_data not bool",
        b'{"inputs": [], "outputs": [{"name": "a", "parameters": {"binary_data": 1}}]}',
        {},
        "outputs[0].parameters.binary_data",
    ),
    ("output twice", b'{"inputs": [], "outputs": [{"name": "a"}, {"name": "a"}]}', {}, "outputs[1].name"),
]


@pytest.mark.parametrize(
    ("body", "headers", "field"), [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED]
)
def test_malformed_request_names_the_field(body: bytes, headers: dict[str, str], field: str) -> None:
    with pytest.raises(ProtocolError) as info:
        decode_infer_request(body, headers)
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}: ")


def _binary_doc(datatype: str, shape: list[int], raw: bytes) -> tuple[bytes, dict[str, str]]:
    head = json.dumps(
        {
            "inputs": [
                {
                    "name": "x",
                    "shape": shape,
                    "datatype": datatype,
                    "parameters": {"binary_data_size": len(raw)},
                }
            ]
        }
    ).encode()
    return head + raw, {HEADER_LENGTH: str(len(head))}


@pytest.mark.parametrize(
    ("datatype", "shape", "raw"),
    [
        ("FP32", [2], b"\x00" * 7),  # 7 bytes cannot be two floats
        ("BOOL", [2], b"\x01\x02"),  # 2 is not a bool
        ("BYTES", [2], b"\x01\x00\x00\x00a"),  # one element, two wanted
        ("BYTES", [1], b"\x09\x00\x00\x00a"),  # length prefix past the end
        ("BYTES", [1], b"\x01\x00"),  # truncated prefix
    ],
)
def test_malformed_binary_tensor_names_the_field(datatype: str, shape: list[int], raw: bytes) -> None:
    body, headers = _binary_doc(datatype, shape, raw)
    with pytest.raises(ProtocolError) as info:
        decode_infer_request(body, headers)
    assert info.value.field == "inputs[0].parameters.binary_data_size"


def test_trailing_bytes_after_binary_tensors_are_refused() -> None:
    body, headers = encode_infer_request({"x": np.zeros(2, np.float32)})
    with pytest.raises(ProtocolError) as info:
        decode_infer_request(body + b"junk", headers)
    assert info.value.field == "body"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"<html>502 Bad Gateway</html>", "body"),
        (b'{"error": "model not found"}', "model_name"),
        (
            b'{"model_name": "m", "outputs": [{"name": "p", "shape": [3], "datatype": "FP32", "data": [1]}]}',
            "outputs[0].data",
        ),
    ],
)
def test_garbage_response_raises_protocol_error(body: bytes, field: str) -> None:
    with pytest.raises(ProtocolError) as info:
        decode_infer_response(body, {})
    assert info.value.field == field


def test_encoding_refuses_what_v2_cannot_carry() -> None:
    with pytest.raises(ProtocolError):
        datatype_of(np.zeros(2, np.complex64))
    with pytest.raises(ProtocolError) as info:
        encode_infer_response("m", None, None, {"s": np.array([b"\xff"], dtype=object)})
    assert info.value.field == "outputs[0].data"
    body, headers = encode_infer_response(
        "m", None, None, {"s": np.array([b"\xff"], dtype=object)}, binary_outputs=True
    )
    assert decode_infer_response(body, headers).outputs["s"].tolist() == [b"\xff"]


def test_big_endian_input_is_sent_little_endian() -> None:
    arr = np.arange(3, dtype=">i4")
    assert datatype_of(arr) == "INT32"
    body, headers = encode_infer_request({"x": arr})
    assert decode_infer_request(body, headers).inputs["x"].tolist() == [0, 1, 2]


def test_data_after_a_gzip_stream_is_refused_and_several_members_are_read() -> None:
    import gzip

    from edgecascade.shared.v2.compression import decompress_body

    body = b'{"inputs": []}'
    assert decompress_body(gzip.compress(body[:5]) + gzip.compress(body[5:]), "gzip", 1 << 20) == body
    with pytest.raises(ProtocolError, match="8 bytes after the end of the compressed data"):
        decompress_body(gzip.compress(body) + b"trailing", "gzip", 1 << 20)
    with pytest.raises(ProtocolError, match="bytes after the end"):
        decompress_body(zlib.compress(body) + zlib.compress(body), "deflate", 1 << 20)


@pytest.mark.parametrize("value", ["9" * 5000, "x" * 20000, "1_0", "²"])
def test_a_long_or_odd_header_value_is_cut_short_in_the_error(value: str) -> None:
    from edgecascade.shared.v2.compression import decompress_body

    doc = json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}]}).encode()
    with pytest.raises(ProtocolError) as caught:
        decode_infer_request(doc, {HEADER_LENGTH: value})
    assert caught.value.field == HEADER_LENGTH and len(str(caught.value)) < 200
    with pytest.raises(ProtocolError) as encoding:
        decompress_body(doc, value, 1 << 20)
    assert len(str(encoding.value)) < 200
