"""The one error tree of edgecascade. No web framework or MQTT imports here.

    EdgecascadeError
    ├── ConfigError              bad profile/config file: names the file, the key, what was expected
    ├── ModelError
    │   ├── ModelLoadError       missing, truncated or corrupt model file (names the file)
    │   └── UnsupportedModelError  unknown extension or backend (lists the supported ones)
    ├── InputError               caller's data does not fit the model
    │   ├── SignatureMismatchError  wrong shape or dtype (states the expected signature)
    │   └── NonFiniteInputError  NaN or infinity in a float input (names the input)
    ├── ProtocolError            a malformed Open Inference Protocol message (names the field)
    │   ├── PayloadTooLargeError   a body, decoded body or tensor over a configured limit (413)
    │   └── UnsupportedEncodingError  a Content-Encoding the server does not speak (415)
    ├── NotFoundError            unknown model or version
    ├── AuthError                missing or wrong bearer token
    ├── UnavailableError         not ready, overloaded, or shutting down
    ├── CloudError               the device could not get an answer from the cloud
    │   ├── CloudUnreachableError  connect failure, timeout or deadline passed
    │   ├── CloudAuthError         the cloud refused our token (not retried)
    │   ├── CloudBadResponseError  5xx or garbage from the cloud
    │   └── CircuitOpenError       the breaker is open; no call was made
    ├── TransportError           an MQTT or HTTP transport failed; `reason_code` carries MQTT's code
    ├── StorageError             an on-device store (buffer, cache, table) is unusable
    └── UpdateError              a model update was refused; `reason` goes into the device status

Both HTTP APIs (cloud and agent) and the agent's MQTT replies map these to status codes in
one place, shared/v2/status.py.
"""

from __future__ import annotations


class EdgecascadeError(Exception):
    """Base of every error edgecascade raises on purpose."""


class ConfigError(EdgecascadeError):
    """A configuration file is invalid. The message names the file and the key."""

    def __init__(self, message: str, *, file: str | None = None, key: str | None = None) -> None:
        self.file = file
        self.key = key
        where = ": ".join(part for part in (file, key) if part)
        super().__init__(f"{where}: {message}" if where else message)


class ModelError(EdgecascadeError):
    """A model cannot be used."""


class ModelLoadError(ModelError):
    """A model file is missing, truncated or corrupt."""

    def __init__(self, path: str, detail: str) -> None:
        self.path = path
        super().__init__(f"cannot load model {path}: {detail}")


class UnsupportedModelError(ModelError):
    """No backend serves this model file or backend name."""


class InputError(EdgecascadeError):
    """The caller's input does not fit the model."""


class SignatureMismatchError(InputError):
    """Wrong shape or dtype; the message states the expected signature."""


class NonFiniteInputError(InputError):
    """A float input holds NaN or infinity; no model answer for it can be trusted. `field` names
    the input's data (e.g. `inputs[0].data`)."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        self.field = field
        super().__init__(f"{field}: {message}" if field else message)


class ProtocolError(EdgecascadeError):
    """A malformed inference request or response. `field` names the offending part."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        self.field = field
        super().__init__(f"{field}: {message}" if field else message)


class PayloadTooLargeError(ProtocolError):
    """A body, a decompressed body or a request's tensors exceed a configured limit (413)."""


class UnsupportedEncodingError(ProtocolError):
    """A request body in a Content-Encoding this server does not decode (415)."""


class NotFoundError(EdgecascadeError):
    """An unknown model or model version."""


class AuthError(EdgecascadeError):
    """Missing (401) or not permitted (403) credentials."""

    def __init__(self, message: str, *, forbidden: bool = False) -> None:
        self.forbidden = forbidden
        super().__init__(message)


class UnavailableError(EdgecascadeError):
    """Not ready, overloaded or shutting down; the caller may retry after `retry_after` seconds."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        self.retry_after = retry_after
        super().__init__(message)


class CloudError(EdgecascadeError):
    """The device could not get an answer from the cloud."""


class CloudUnreachableError(CloudError):
    """Connection refused or reset, a timeout, or the request deadline passed."""


class CloudAuthError(CloudError):
    """The cloud refused the device's token. Not retried; logged once."""


class CloudBadResponseError(CloudError):
    """The cloud answered with a 5xx status or a body that is not a valid V2 response."""


class CircuitOpenError(CloudError):
    """The circuit breaker is open, so no call was attempted."""


class TransportError(EdgecascadeError):
    """An MQTT or HTTP transport failed. `reason_code` is MQTT's reason code where there is one."""

    def __init__(self, message: str, *, reason_code: int | None = None) -> None:
        self.reason_code = reason_code
        super().__init__(message)


class StorageError(EdgecascadeError):
    """An on-device store (telemetry buffer, answer cache, lookup table) is unusable."""


class UpdateError(EdgecascadeError):
    """A model update was refused or failed; `reason` is reported in the device status."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)
