"""`answer_v2`: body and headers of one infer request in, status, body and headers out. The cloud
API, the agent's HTTP API and the agent's MQTT request topic all answer through it, so every
transport decodes, bounds, encodes and reports errors the same way; each front end only moves
bytes and supplies `serve`, which answers a decoded request."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from edgecascade.shared.errors import EdgecascadeError, ProtocolError
from edgecascade.shared.v2.codec import (
    JSON_TYPE,
    InferRequest,
    InferResponse,
    decode_infer_request,
    encode_infer_response,
)
from edgecascade.shared.v2.compression import choose_encoding, compress_body, decompress_body
from edgecascade.shared.v2.limits import RequestLimits
from edgecascade.shared.v2.status import status_for

log = logging.getLogger(__name__)

Serve = Callable[[InferRequest], Awaitable[InferResponse]]


@dataclass(slots=True)
class Reply:
    """What to send back. `request` is the decoded request when decoding got that far (MQTT
    reads its reply topic there); `error` is the message of an error reply."""

    status: int
    body: bytes
    headers: dict[str, str]
    request: InferRequest | None = None
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def error_reply(
    status: int,
    message: str,
    headers: Mapping[str, str] | None = None,
    *,
    field_name: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Reply:
    """The JSON error every route answers with: `{"error": ..., "field"?: ...}` plus `extra`."""
    doc: dict[str, Any] = {"error": message}
    if field_name:
        doc["field"] = field_name
    if extra:
        doc.update(extra)
    return Reply(status, orjson.dumps(doc), {"content-type": JSON_TYPE, **(headers or {})}, error=message)


def reply_for_error(exc: BaseException, *, extra: Mapping[str, Any] | None = None) -> Reply:
    """The error reply for an exception, through the one status map."""
    status, headers = status_for(exc)
    if not isinstance(exc, EdgecascadeError):
        log.error("infer failed unexpectedly", exc_info=exc)  # a bug: its traceback, once
        return error_reply(500, "internal server error; see the server's log", headers, extra=extra)
    if status >= 500:
        log.warning("answering %d: %s", status, exc)
    return error_reply(status, str(exc), headers, field_name=getattr(exc, "field", None), extra=extra)


async def answer_v2(
    body: bytes,
    headers: Mapping[str, str],
    serve: Serve,
    *,
    limits: RequestLimits,
    binary_allowed: bool = True,
    compression: bool = True,
    parameters: Mapping[str, Any] | None = None,
) -> Reply:
    """Answer one infer request. `headers` are the request's, with lower-case names (as ASGI
    gives them) or in a case-insensitive mapping (Starlette's); `binary_allowed=False` answers in JSON whatever was asked (MQTT);
    `parameters` are added to the response's (MQTT's correlation id). Never raises."""
    request: InferRequest | None = None
    try:
        limits.check_body(len(body))
        encoding = headers.get("content-encoding")
        if encoding:
            body = decompress_body(body, encoding, limits.max_body_bytes)
        request = decode_infer_request(body, headers, limits)
        response = await serve(request)
        payload, out_headers = _encode(response, request, binary_allowed, parameters)
        reply = Reply(200, payload, out_headers, request)
    except Exception as exc:  # noqa: BLE001 - every error becomes a reply; bugs are logged with traceback
        extra = dict(parameters or {})
        if request is not None and request.id is not None:
            extra["id"] = request.id
        reply = reply_for_error(exc, extra=extra)
        reply.request = request
        return reply
    accepted = headers.get("accept-encoding") if compression else None
    if accepted:
        _compress(reply, accepted)
    return reply


def _encode(
    response: InferResponse, request: InferRequest, binary_allowed: bool, parameters: Mapping[str, Any] | None
) -> tuple[bytes, dict[str, str]]:
    params = dict(response.parameters)
    if parameters:
        params.update(parameters)
    return encode_infer_response(
        response.model_name,
        response.model_version,
        response.id,
        response.outputs,
        binary_outputs=binary_outputs_for(request) if binary_allowed else False,
        parameters=params,
    )


def _compress(reply: Reply, accepted: str) -> None:
    """Compress the reply's body in the first encoding of Accept-Encoding we offer, if any."""
    chosen = choose_encoding(accepted)
    if chosen is not None:
        reply.body = compress_body(reply.body, chosen)
        reply.headers["Content-Encoding"] = chosen
        reply.headers["Vary"] = "Accept-Encoding"


def binary_outputs_for(request: InferRequest) -> set[str] | bool:
    """Which outputs go back raw: those asked for with binary_data, or all per binary_data_output."""
    if request.outputs is None:
        return request.binary_output_default
    return {out.name for out in request.outputs if out.binary}


def check_output_names(request: InferRequest, available: list[str], model: str) -> list[str]:
    """The outputs to return, in the order asked; ProtocolError naming an unknown one."""
    if request.outputs is None:
        return list(available)
    for i, out in enumerate(request.outputs):
        if out.name not in available:
            raise ProtocolError(
                f"model {model} has no output {out.name!r}; outputs: {available}", field=f"outputs[{i}].name"
            )
    return [out.name for out in request.outputs]
