"""V2 gRPC messages <-> the codec's InferRequest / InferResponse and numpy arrays.

Tensors travel as `raw_*_contents` (row-major little-endian bytes, as the REST binary
extension) or as typed `contents`; both are checked against shape and datatype exactly as the
REST codec checks them, and every error is a ProtocolError naming the field."""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping, Sequence
from typing import Any

import numpy as np
import orjson

from edgecascade.shared.errors import ProtocolError
from edgecascade.shared.v2.codec import InferRequest, InferResponse, RequestedOutput
from edgecascade.shared.v2.datatypes import DATATYPES, datatype_of, element_count, from_raw, to_raw
from edgecascade.shared.v2.grpc import grpc_predict_v2_pb2 as pb
from edgecascade.shared.v2.limits import DEFAULT_LIMITS, RequestLimits, TensorBudget
from edgecascade.shared.v2.schema import MetadataTensor, ModelMetadata, ServerMetadata

#: The typed `contents` field that carries each datatype (FP16 has none: raw only).
CONTENTS_FIELD = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}
_INT64_MAX = 2**63 - 1


# -- parameters ---------------------------------------------------------------------------------
def parameters_from_proto(params: Mapping[str, pb.InferParameter]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in params.items():
        which = value.WhichOneof("parameter_choice")
        out[key] = getattr(value, which) if which else None
    return out


def parameters_to_proto(values: Mapping[str, Any], target: MutableMapping[str, pb.InferParameter]) -> None:
    """Scalars map to their own kinds; anything else (lists, dicts) travels as JSON text."""
    for key, value in values.items():
        param = target[key]
        if isinstance(value, bool):
            param.bool_param = value
        elif isinstance(value, int):
            if value > _INT64_MAX:
                param.uint64_param = value
            else:
                param.int64_param = value
        elif isinstance(value, float):
            param.double_param = value
        elif isinstance(value, str):
            param.string_param = value
        else:
            param.string_param = orjson.dumps(value).decode()


# -- tensors ------------------------------------------------------------------------------------
def _check_header(name: str, datatype: str, at: str) -> None:
    if not name:
        raise ProtocolError("must be a non-empty string", field=f"{at}.name")
    if datatype not in DATATYPES:
        raise ProtocolError(
            f"unknown datatype {datatype[:40]!r}; one of {list(DATATYPES)}", field=f"{at}.datatype"
        )


def _from_contents(contents: pb.InferTensorContents, datatype: str, shape: list[int], at: str) -> np.ndarray:
    field = CONTENTS_FIELD.get(datatype)
    if field is None:
        raise ProtocolError(f"{datatype} has no typed contents; send it in raw_input_contents", field=at)
    given = [f.name for f, _ in contents.ListFields()]
    if any(name != field for name in given):
        raise ProtocolError(
            f"{datatype} data belongs in contents.{field}, got {given}", field=f"{at}.contents"
        )
    values = getattr(contents, field)
    count = element_count(shape)
    if len(values) != count:
        raise ProtocolError(
            f"{len(values)} values; shape {shape} of {datatype} needs {count}", field=f"{at}.contents.{field}"
        )
    if datatype == "BYTES":
        out = np.empty(count, dtype=object)
        out[:] = list(values)
        return out.reshape(shape)
    dtype = DATATYPES[datatype]
    arr = np.asarray(values)
    if count and dtype.kind in "iu":
        info = np.iinfo(dtype)
        if int(arr.min()) < info.min or int(arr.max()) > info.max:
            raise ProtocolError(f"value out of range for {datatype}", field=f"{at}.contents.{field}")
    return arr.astype(dtype).reshape(shape)


def _read_tensors(
    tensors: Sequence[Any],
    raws: Sequence[bytes],
    where: str,
    raw_field: str,
    *,
    limits: RequestLimits,
    allow_empty: bool,
) -> dict[str, np.ndarray]:
    """The tensors of a message, each shape checked by the limits REST applies (rank, element
    count, tensor bytes; a zero dimension only where `allow_empty`) before anything is built."""
    budget = TensorBudget(limits)
    if raws and len(raws) != len(tensors):
        raise ProtocolError(
            f"{len(raws)} raw tensors for {len(tensors)} {where}; give one per tensor", field=raw_field
        )
    arrays: dict[str, np.ndarray] = {}
    for i, t in enumerate(tensors):
        at = f"{where}[{i}]"
        _check_header(t.name, t.datatype, at)
        shape = list(t.shape)
        budget.admit(shape, t.datatype, where, i, allow_empty=allow_empty)
        if t.name in arrays:
            raise ProtocolError(f"tensor {t.name!r} appears twice", field=f"{at}.name")
        if raws:
            # An empty contents message next to raw data is fine (MLServer sends one).
            if t.contents.ListFields():
                raise ProtocolError("give raw contents or typed contents, not both", field=f"{at}.contents")
            arrays[t.name] = from_raw(raws[i], t.datatype, shape, f"{raw_field}[{i}]")
        else:
            arrays[t.name] = _from_contents(t.contents, t.datatype, shape, at)
    return arrays


def _write_tensors(arrays: Mapping[str, np.ndarray], tensors: Any, raws: Any, where: str) -> None:
    """Append every array as a tensor header plus its raw bytes (raw for every tensor, as the
    protocol requires once one is raw)."""
    for i, (name, value) in enumerate(arrays.items()):
        arr = np.asarray(value)
        datatype = datatype_of(arr)
        tensors.add(name=name, datatype=datatype, shape=list(arr.shape))
        raws.append(to_raw(arr, datatype, f"{where}[{i}]"))


# -- infer --------------------------------------------------------------------------------------
def request_from_proto(request: pb.ModelInferRequest, limits: RequestLimits = DEFAULT_LIMITS) -> InferRequest:
    """The server's view of a ModelInferRequest (raises ProtocolError naming the field, and
    PayloadTooLargeError past `limits`; a zero-size input is refused, as over REST)."""
    outputs: list[RequestedOutput] | None = None
    if request.outputs:
        outputs = []
        for i, out in enumerate(request.outputs):
            if any(o.name == out.name for o in outputs):
                raise ProtocolError(f"output {out.name!r} requested twice", field=f"outputs[{i}].name")
            outputs.append(RequestedOutput(out.name, True))
    return InferRequest(
        inputs=_read_tensors(
            request.inputs,
            request.raw_input_contents,
            "inputs",
            "raw_input_contents",
            limits=limits,
            allow_empty=False,
        ),
        id=request.id or None,
        parameters=parameters_from_proto(request.parameters),
        outputs=outputs,
        binary_output_default=True,
    )


def response_to_proto(response: InferResponse) -> pb.ModelInferResponse:
    message = pb.ModelInferResponse(
        model_name=response.model_name, model_version=response.model_version or "", id=response.id or ""
    )
    parameters_to_proto(response.parameters, message.parameters)
    _write_tensors(response.outputs, message.outputs, message.raw_output_contents, "outputs")
    return message


def request_to_proto(
    model: str,
    version: str | None,
    inputs: Mapping[str, np.ndarray],
    *,
    request_id: str | None = None,
    parameters: Mapping[str, Any] | None = None,
    outputs: Sequence[str] | None = None,
) -> pb.ModelInferRequest:
    """The client's ModelInferRequest: inputs as raw_input_contents."""
    message = pb.ModelInferRequest(model_name=model, model_version=version or "", id=request_id or "")
    parameters_to_proto(parameters or {}, message.parameters)
    _write_tensors(inputs, message.inputs, message.raw_input_contents, "inputs")
    for name in outputs or ():
        message.outputs.add(name=name)
    return message


def response_from_proto(
    response: pb.ModelInferResponse, limits: RequestLimits = DEFAULT_LIMITS
) -> InferResponse:
    """The client's view of a ModelInferResponse (raises ProtocolError on a malformed one; an
    empty output, such as a detector's [1, 0, 4], is fine)."""
    return InferResponse(
        model_name=response.model_name,
        model_version=response.model_version or None,
        id=response.id or None,
        parameters=parameters_from_proto(response.parameters),
        outputs=_read_tensors(
            response.outputs,
            response.raw_output_contents,
            "outputs",
            "raw_output_contents",
            limits=limits,
            allow_empty=True,
        ),
    )


# -- metadata -----------------------------------------------------------------------------------
def server_metadata_to_proto(meta: ServerMetadata) -> pb.ServerMetadataResponse:
    return pb.ServerMetadataResponse(name=meta.name, version=meta.version, extensions=meta.extensions)


def server_metadata_from_proto(message: pb.ServerMetadataResponse) -> ServerMetadata:
    return ServerMetadata(name=message.name, version=message.version, extensions=list(message.extensions))


def model_metadata_to_proto(meta: ModelMetadata) -> pb.ModelMetadataResponse:
    message = pb.ModelMetadataResponse(name=meta.name, versions=meta.versions or [], platform=meta.platform)
    for src, dst in ((meta.inputs, message.inputs), (meta.outputs, message.outputs)):
        for t in src:
            dst.add(name=t.name, datatype=t.datatype, shape=t.shape)
    return message


def model_metadata_from_proto(message: pb.ModelMetadataResponse) -> ModelMetadata:
    def tensors(items: Sequence[Any]) -> list[MetadataTensor]:
        return [MetadataTensor(name=t.name, datatype=t.datatype, shape=list(t.shape)) for t in items]

    return ModelMetadata(
        name=message.name,
        versions=list(message.versions),
        platform=message.platform,
        inputs=tensors(message.inputs),
        outputs=tensors(message.outputs),
    )
