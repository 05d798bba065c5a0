"""gRPC status codes for edgecascade errors, derived from the one HTTP map (cloud/http_errors.py),
so both front ends judge every error alike (KServe's and Triton's HTTP <-> gRPC pairing)."""

from __future__ import annotations

import grpc

from edgecascade.cloud.http_errors import status_for

_BY_HTTP = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    409: grpc.StatusCode.ALREADY_EXISTS,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    415: grpc.StatusCode.INVALID_ARGUMENT,
    422: grpc.StatusCode.INVALID_ARGUMENT,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    503: grpc.StatusCode.UNAVAILABLE,
}


def grpc_status_for(exc: BaseException) -> tuple[grpc.StatusCode, int]:
    """(gRPC status, the HTTP status REST would answer) for an error raised while serving."""
    http_status, _ = status_for(exc)
    return _BY_HTTP.get(http_status, grpc.StatusCode.INTERNAL), http_status
