"""The one map from edgecascade errors to V2 status codes, used by the cloud API, the agent's
local API and the agent's MQTT replies (which carry the same status in their JSON)."""

from __future__ import annotations

import math

from edgecascade.shared.errors import (
    AuthError,
    InputError,
    NotFoundError,
    PayloadTooLargeError,
    ProtocolError,
    UnavailableError,
    UnsupportedEncodingError,
)


def status_for(exc: BaseException) -> tuple[int, dict[str, str]]:
    """(status code, extra headers) for an error raised while serving a request."""
    if isinstance(exc, PayloadTooLargeError):
        return 413, {}
    if isinstance(exc, UnsupportedEncodingError):
        return 415, {"Accept-Encoding": "gzip, deflate"}
    if isinstance(exc, ProtocolError | InputError):
        return 400, {}
    if isinstance(exc, AuthError):
        if exc.forbidden:
            return 403, {}
        return 401, {"WWW-Authenticate": "Bearer"}
    if isinstance(exc, NotFoundError):
        return 404, {}
    if isinstance(exc, UnavailableError):
        retry = exc.retry_after if exc.retry_after is not None else 1.0
        return 503, {"Retry-After": str(max(1, math.ceil(retry)))}
    return 500, {}  # ModelError, EdgecascadeError or a bug: the server's fault
