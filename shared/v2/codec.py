"""Encode and decode V2 infer requests and responses, JSON or with the binary tensor extension.

Binary extension: the body is the JSON header followed by each binary tensor's raw
little-endian bytes, in the order the tensors appear in the header; the HTTP header
`Inference-Header-Content-Length` gives the JSON's length and each binary tensor carries
parameter `binary_data_size`. Every decoding error is a ProtocolError naming the field."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import orjson
from pydantic import BaseModel, ValidationError

from edgecascade.shared.errors import ProtocolError
from edgecascade.shared.v2.datatypes import DATATYPES, datatype_of, from_raw, to_raw
from edgecascade.shared.v2.json_data import from_json_data, to_json_data
from edgecascade.shared.v2.limits import DEFAULT_LIMITS, RequestLimits, TensorBudget
from edgecascade.shared.v2.schema import InferRequestWire, InferResponseWire, TensorWire

HEADER_LENGTH = "Inference-Header-Content-Length"
_HEADER_LENGTH_LOWER = HEADER_LENGTH.lower()
#: Inference-Header-Content-Length: ASCII digits only (int() also takes "1_0" and other scripts).
_BYTE_COUNT = re.compile(r"\s*[0-9]{1,20}\s*")
JSON_TYPE = "application/json"
BINARY_TYPE = "application/octet-stream"

_M = TypeVar("_M", bound=BaseModel)


@dataclass(frozen=True, slots=True)
class RequestedOutput:
    """An output the caller asked for; `binary` is resolved against the request's default."""

    name: str
    binary: bool = False


@dataclass(slots=True)
class InferRequest:
    """A decoded request. `inputs` keeps the wire order; `outputs` is None when all are wanted."""

    inputs: dict[str, np.ndarray]
    id: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    outputs: list[RequestedOutput] | None = None
    binary_output_default: bool = False


@dataclass(slots=True)
class InferResponse:
    model_name: str
    outputs: dict[str, np.ndarray]
    model_version: str | None = None
    id: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)


def encode_infer_request(
    inputs: dict[str, np.ndarray],
    *,
    request_id: str | None = None,
    parameters: dict[str, Any] | None = None,
    outputs: list[str] | None = None,
    binary: bool = True,
    binary_outputs: bool = True,
) -> tuple[bytes, dict[str, str]]:
    """Body and HTTP headers for POST .../infer. `binary` sends inputs as raw tensors;
    `binary_outputs` asks for raw outputs (per output if `outputs` is given, else for all)."""
    header: dict[str, Any] = {}
    if request_id is not None:
        header["id"] = request_id
    params = dict(parameters or {})
    if outputs is None and binary_outputs:
        params["binary_data_output"] = True
    if params:
        header["parameters"] = params
    header["inputs"], raws = _tensors(inputs, binary, "inputs")
    if outputs is not None:
        header["outputs"] = [{"name": n, "parameters": {"binary_data": binary_outputs}} for n in outputs]
    return _assemble(header, raws, binary)


def decode_infer_request(
    body: bytes, headers: Mapping[str, str], limits: RequestLimits = DEFAULT_LIMITS
) -> InferRequest:
    """Parse a request body; raises ProtocolError naming the bad field (e.g. `inputs[0].data`),
    PayloadTooLargeError where a shape or the JSON passes `limits` (checked before allocating)."""
    header, binary = _split(body, headers)
    limits.check_json(len(header))
    wire = _validate(InferRequestWire, header)
    params = dict(wire.parameters or {})
    default = params.get("binary_data_output", False)
    if not isinstance(default, bool):
        raise ProtocolError("must be true or false", field="parameters.binary_data_output")
    requested: list[RequestedOutput] | None = None
    if wire.outputs is not None:
        requested = []
        for i, out in enumerate(wire.outputs):
            flag = (out.parameters or {}).get("binary_data", default)
            if not isinstance(flag, bool):
                raise ProtocolError("must be true or false", field=f"outputs[{i}].parameters.binary_data")
            if any(r.name == out.name for r in requested):
                raise ProtocolError(f"output {out.name!r} requested twice", field=f"outputs[{i}].name")
            requested.append(RequestedOutput(out.name, flag))
    return InferRequest(
        inputs=_read_tensors(wire.inputs, binary, "inputs", TensorBudget(limits), allow_empty=False),
        id=wire.id,
        parameters=params,
        outputs=requested,
        binary_output_default=default,
    )


def encode_infer_response(
    model_name: str,
    model_version: str | None,
    request_id: str | None,
    outputs: dict[str, np.ndarray],
    *,
    binary_outputs: set[str] | bool = False,
    parameters: dict[str, Any] | None = None,
) -> tuple[bytes, dict[str, str]]:
    """Body and headers of a 200 response; `binary_outputs` names the outputs sent raw (or all/none)."""
    header: dict[str, Any] = {"model_name": model_name}
    if model_version is not None:
        header["model_version"] = model_version
    if request_id is not None:
        header["id"] = request_id
    if parameters:
        header["parameters"] = parameters
    header["outputs"], raws = _tensors(outputs, binary_outputs, "outputs")
    return _assemble(header, raws, any(raw is not None for raw in raws))


def decode_infer_response(body: bytes, headers: Mapping[str, str]) -> InferResponse:
    """Parse a 200 response body; raises ProtocolError on anything that is not a valid V2 response."""
    header, binary = _split(body, headers)
    wire = _validate(InferResponseWire, header)
    return InferResponse(
        model_name=wire.model_name,
        model_version=wire.model_version,
        id=wire.id,
        parameters=dict(wire.parameters or {}),
        outputs=_read_tensors(
            wire.outputs, binary, "outputs", TensorBudget(DEFAULT_LIMITS), allow_empty=True
        ),
    )


def _tensors(
    arrays: dict[str, np.ndarray], binary: set[str] | bool, where: str
) -> tuple[list[dict[str, Any]], list[bytes | None]]:
    entries: list[dict[str, Any]] = []
    raws: list[bytes | None] = []
    for i, (name, value) in enumerate(arrays.items()):
        arr = np.asarray(value)
        datatype = datatype_of(arr)
        entry: dict[str, Any] = {"name": name, "shape": list(arr.shape), "datatype": datatype}
        as_binary = binary if isinstance(binary, bool) else name in binary
        if as_binary:
            raw = to_raw(arr, datatype, f"{where}[{i}]")
            entry["parameters"] = {"binary_data_size": len(raw)}
            raws.append(raw)
        else:
            entry["data"] = to_json_data(arr, datatype, f"{where}[{i}].data")
            raws.append(None)
        entries.append(entry)
    return entries, raws


def _assemble(header: dict[str, Any], raws: list[bytes | None], binary: bool) -> tuple[bytes, dict[str, str]]:
    # orjson: ~10x faster than json.dumps on these small headers, on the hot path of every answer.
    text = orjson.dumps(header)
    if not binary:
        return text, {"Content-Type": JSON_TYPE}
    body = b"".join([text, *(raw for raw in raws if raw is not None)])
    return body, {"Content-Type": BINARY_TYPE, HEADER_LENGTH: str(len(text))}


def _split(body: bytes, headers: Mapping[str, str]) -> tuple[bytes, memoryview]:
    # ASGI servers give lower-case names, so the direct lookup usually answers.
    length_text = headers.get(_HEADER_LENGTH_LOWER)
    if length_text is None:
        length_text = next((v for k, v in headers.items() if k.lower() == _HEADER_LENGTH_LOWER), None)
    if length_text is None:
        return body, memoryview(b"")
    # A header value is echoed cut short: a client may send thousands of characters.
    if _BYTE_COUNT.fullmatch(length_text) is None:
        raise ProtocolError(
            f"not a byte count within the body: {length_text[:40]!r}", field=HEADER_LENGTH
        ) from None
    length = int(length_text)
    if length > len(body):
        raise ProtocolError(f"{length} is outside the body's {len(body)} bytes", field=HEADER_LENGTH)
    return body[:length], memoryview(body)[length:]


def _validate(model: type[_M], header: bytes) -> _M:
    try:
        return model.model_validate_json(header)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise ProtocolError(err["msg"], field=_path(err["loc"]) or "body") from None


def _path(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def _read_tensors(
    tensors: list[TensorWire], binary: memoryview, where: str, budget: TensorBudget, *, allow_empty: bool
) -> dict[str, np.ndarray]:
    arrays: dict[str, np.ndarray] = {}
    offset = 0
    for i, t in enumerate(tensors):
        # Field names are formatted only for an error: this loop runs on every request.
        if t.name in arrays:
            raise ProtocolError(f"tensor {t.name!r} appears twice", field=f"{where}[{i}].name")
        if t.datatype not in DATATYPES:
            raise ProtocolError(
                f"unknown datatype {t.datatype!r}; one of {list(DATATYPES)}", field=f"{where}[{i}].datatype"
            )
        budget.admit(t.shape, t.datatype, where, i, allow_empty=allow_empty)
        size = t.parameters.get("binary_data_size") if t.parameters else None
        if size is None:
            arrays[t.name] = from_json_data(t.data, t.datatype, t.shape, f"{where}[{i}].data")
            continue
        size_field = f"{where}[{i}].parameters.binary_data_size"
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise ProtocolError(f"must be a non-negative integer, got {size!r}", field=size_field)
        if t.data is not None:
            raise ProtocolError("a binary tensor must not also have `data`", field=f"{where}[{i}].data")
        if offset + size > len(binary):
            raise ProtocolError(
                f"{size} bytes wanted at offset {offset}, but only {len(binary) - offset} follow the JSON",
                field=size_field,
            )
        arrays[t.name] = from_raw(binary[offset : offset + size], t.datatype, t.shape, size_field)
        offset += size
    if offset != len(binary):
        raise ProtocolError(f"{len(binary) - offset} bytes after the last binary tensor", field="body")
    return arrays
