"""gRPC messages get the shape checks REST gets: what a hostile server or client puts in a
shape is a ProtocolError naming the field, never a numpy error inside the decoder."""

from __future__ import annotations

import pytest

from edgecascade.shared.errors import PayloadTooLargeError, ProtocolError
from edgecascade.shared.v2.grpc import grpc_predict_v2_pb2 as pb
from edgecascade.shared.v2.grpc.convert import response_from_proto


def _response(shape: list[int], raw: bytes) -> pb.ModelInferResponse:
    message = pb.ModelInferResponse(model_name="m")
    message.outputs.add(name="boxes", datatype="FP32", shape=shape)
    message.raw_output_contents.append(raw)
    return message


@pytest.mark.parametrize(
    ("shape", "error", "words"),
    [
        ([0, 2**62], ProtocolError, "has a dimension over"),
        ([2**40, 0], ProtocolError, "has a dimension over"),
        ([1] * 17, ProtocolError, "17 dimensions"),
        ([-1, 4], ProtocolError, "negative dimension"),
        ([1 << 20, 1 << 10], PayloadTooLargeError, r"elements \(the limit per request\)"),
    ],
)
def test_a_hostile_response_shape_is_a_protocol_error(shape: list[int], error: type, words: str) -> None:
    with pytest.raises(error, match=words) as caught:
        response_from_proto(_response(shape, b""))
    assert caught.value.field == "outputs[0].shape"  # type: ignore[attr-defined]


def test_an_empty_detection_output_is_an_answer() -> None:
    out = response_from_proto(_response([1, 0, 4], b"")).outputs["boxes"]
    assert out.shape == (1, 0, 4)
