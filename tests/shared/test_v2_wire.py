"""shared.v2's bounds, compression, input checks and answer_v2, and the image header probe."""

from __future__ import annotations

import asyncio
import gzip
import json
import zlib

import cv2
import numpy as np
import pytest

from edgecascade.shared.errors import (
    NonFiniteInputError,
    PayloadTooLargeError,
    ProtocolError,
    UnsupportedEncodingError,
)
from edgecascade.shared.features.image_header import image_size
from edgecascade.shared.v2 import (
    InferRequest,
    InferResponse,
    RequestLimits,
    answer_v2,
    decode_infer_request,
    model_metadata,
    tensor_metadata,
)
from edgecascade.shared.v2.checks import check_datatypes, check_finite
from edgecascade.shared.v2.compression import choose_encoding, compress_body, decompress_body
from edgecascade.shared.v2.status import status_for
from tests.support.images import blank_png

LIMITS = RequestLimits(
    max_body_bytes=1 << 20, max_json_bytes=1 << 16, max_tensor_bytes=4096, max_elements=1000
)


def _request(shape: object, data: object = None, datatype: str = "FP32") -> bytes:
    return json.dumps(
        {"inputs": [{"name": "x", "datatype": datatype, "shape": shape, "data": data}]}
    ).encode()


@pytest.mark.parametrize(
    ("shape", "error", "words"),
    [
        ([0, 9223372036854775807], ProtocolError, "no elements"),
        ([1] * 17, ProtocolError, "17 dimensions"),
        ([-3], ProtocolError, "negative"),
        ([1001], PayloadTooLargeError, "over 1000 elements"),
        ([2**80, 2**80], PayloadTooLargeError, "over 1000 elements"),
    ],
)
def test_shapes_are_bounded_before_anything_is_allocated(shape: list[int], error: type, words: str) -> None:
    with pytest.raises(error, match=words) as caught:
        decode_infer_request(_request(shape, [1.0]), {}, LIMITS)
    assert caught.value.field == "inputs[0].shape"


def test_bytes_and_elements_are_counted_across_tensors() -> None:
    doc = {
        "inputs": [
            {"name": f"x{i}", "datatype": "FP64", "shape": [300], "data": [0.0] * 300} for i in range(2)
        ]
    }
    with pytest.raises(PayloadTooLargeError, match="4800 bytes") as caught:
        decode_infer_request(json.dumps(doc).encode(), {}, LIMITS)
    assert caught.value.field == "inputs[1].shape"


def test_the_json_part_is_bounded() -> None:
    body = _request([1], [1.0]) + b" " * (1 << 16)
    with pytest.raises(PayloadTooLargeError, match="JSON part"):
        decode_infer_request(body, {}, LIMITS)


def test_decompression_is_bounded_and_understands_both_deflates() -> None:
    plain = b"x" * 5000
    assert decompress_body(gzip.compress(plain), "gzip", 5000) == plain
    assert decompress_body(zlib.compress(plain), "deflate", 5000) == plain
    raw = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    assert decompress_body(raw.compress(plain) + raw.flush(), "deflate", 5000) == plain
    assert decompress_body(plain, "identity", 10) == plain
    with pytest.raises(PayloadTooLargeError):
        decompress_body(gzip.compress(b"\0" * (50 << 20)), "gzip", 1 << 20)
    with pytest.raises(UnsupportedEncodingError):
        decompress_body(plain, "br", 5000)
    with pytest.raises(ProtocolError, match="not valid gzip"):
        decompress_body(plain, "gzip", 5000)


@pytest.mark.parametrize(
    ("header", "chosen"),
    [
        ("gzip", "gzip"),
        ("deflate", "deflate"),
        ("gzip;q=0.5, deflate", "deflate"),
        ("gzip;q=0", None),
        ("br, identity", None),
        ("*", "gzip"),
        (None, None),
    ],
)
def test_accept_encoding(header: str | None, chosen: str | None) -> None:
    assert choose_encoding(header) == chosen


def test_compress_round_trip() -> None:
    assert gzip.decompress(compress_body(b"abc" * 100, "gzip")) == b"abc" * 100
    assert zlib.decompress(compress_body(b"abc" * 100, "deflate")) == b"abc" * 100


def test_datatypes_are_strict_unless_conversion_is_allowed() -> None:
    inputs = {"x": np.zeros((1, 4), np.float64)}
    with pytest.raises(
        ProtocolError, match="'x' is FP64, but the model's input 'x' is FP32; opt = true"
    ) as caught:
        check_datatypes(inputs, {"x": "FP32"}, convert=False, setting="opt")
    assert caught.value.field == "inputs[0].datatype"
    converted = check_datatypes(inputs, {"x": "FP32"}, convert=True, setting="opt")
    assert converted["x"].dtype == np.float32 and inputs["x"].dtype == np.float64
    text = {"x": np.array([b"1"], dtype=object)}
    with pytest.raises(ProtocolError, match="BYTES"):
        check_datatypes(text, {"x": "FP32"}, convert=True, setting="opt")


def test_non_finite_values_are_refused_and_counted() -> None:
    check_finite({"x": np.ones(3, np.float32), "n": np.array([1], np.int64)})
    with pytest.raises(NonFiniteInputError, match="2 non-finite"):
        check_finite({"x": np.array([np.nan, 1.0, np.inf], np.float32)})


def test_one_metadata_builder_names_the_platform() -> None:
    meta = model_metadata(
        "m", versions=["1"], backend="tflite", inputs=[tensor_metadata("x", "float32", [-1, 4])], outputs=[]
    )
    assert meta.platform == "tensorflow_tflite"
    assert meta.inputs[0].datatype == "FP32"
    assert (
        model_metadata("m", versions=["1"], backend="onnx", inputs=[], outputs=[]).platform == "onnx_onnxv1"
    )


def _answer(body: bytes, headers: dict[str, str], serve) -> tuple[int, dict[str, object], dict[str, str]]:  # type: ignore[no-untyped-def]
    reply = asyncio.run(answer_v2(body, headers, serve, limits=LIMITS))
    raw = reply.body
    if reply.headers.get("Content-Encoding") == "gzip":
        raw = gzip.decompress(raw)
    return reply.status, json.loads(raw), reply.headers


def test_answer_v2_maps_every_outcome() -> None:
    async def echo(request: InferRequest) -> InferResponse:
        return InferResponse("m", request.inputs, "1", request.id)

    async def broken(request: InferRequest) -> InferResponse:
        raise KeyError("a bug")

    good = _request([2], [1.0, 2.0])
    status, doc, headers = _answer(good, {"accept-encoding": "gzip"}, echo)
    assert status == 200 and headers["Content-Encoding"] == "gzip" and doc["outputs"][0]["data"] == [1.0, 2.0]
    status, doc, _ = _answer(gzip.compress(good), {"content-encoding": "gzip"}, echo)
    assert status == 200
    status, doc, _ = _answer(_request([2], [1.0]), {}, echo)
    assert status == 400 and doc["field"] == "inputs[0].data"
    status, doc, _ = _answer(good, {}, broken)
    assert status == 500 and "a bug" not in doc["error"]
    status, doc, headers = _answer(b"x", {"content-encoding": "zstd"}, echo)
    assert status == 415 and headers["Accept-Encoding"] == "gzip, deflate"
    assert status_for(PayloadTooLargeError("big"))[0] == 413


def test_image_headers_of_every_format() -> None:
    image = np.zeros((30, 40, 3), np.uint8)
    for ext in (".png", ".jpg", ".bmp", ".webp", ".ppm"):
        ok, data = cv2.imencode(ext, image)
        assert ok
        found = image_size(data.tobytes())
        assert found is not None and found[1:] == (40, 30), ext
    assert image_size(b"GIF89a(\x00\x1e\x00") == ("GIF", 40, 30)
    assert image_size(b"P5\n# comment\n40 30\n255\n") == ("PNM", 40, 30)
    assert image_size(blank_png(20000, 20000)) == ("PNG", 20000, 20000)
    assert image_size(b"\x89PNG\r\n\x1a\n") is None  # cut short
    assert image_size(b"\xff\xd8\xff\xe0\x00\x10JFIF") is None  # JPEG without its frame header
    assert image_size(b"II*\x00 tiff is not read") is None
