"""[cloud]: the V2 inference server hard cases are escalated to, and how to call it."""

from typing import Self

from pydantic import Field, SecretStr, field_validator, model_validator

from edgecascade.edge.cloud_client.registry import SCHEMES
from edgecascade.edge.config.base import ProfilePath, Section


class CloudSection(Section):
    url: str | None = Field(
        None, description="Base URL of a V2 inference server; unset = offline-only device."
    )
    model: str = Field("digits-cloud", description="Cloud model name.")
    model_version: str | None = Field(None, description="Pin a version; default = the server's default.")
    token: SecretStr | None = Field(
        None, description="Bearer token (prefer token_file or EDGECASCADE_CLOUD__TOKEN)."
    )
    token_file: ProfilePath | None = Field(None, description="File holding the bearer token.")
    connect_timeout_s: float = Field(0.5, gt=0, description="TCP connect timeout.")
    read_timeout_s: float = Field(1.0, gt=0, description="Read timeout per attempt.")
    deadline_s: float = Field(1.5, gt=0, description="Total time for one escalation, retries included.")
    retries: int = Field(
        2, ge=0, le=10, description="Retries on retryable errors (connect errors, 502/503/504)."
    )
    backoff_base_s: float = Field(0.05, ge=0, description="First retry delay; doubles with full jitter.")
    breaker_failures: int = Field(5, ge=1, description="Consecutive failures that open the circuit breaker.")
    breaker_reset_s: float = Field(10.0, gt=0, description="Open time before a half-open probe.")
    send_raw_input: bool = Field(
        False,
        description="Privacy: by default only encoded features leave the device; true also sends raw input.",
    )
    binary_tensors: bool = Field(
        True,
        description="Use the V2 binary tensor extension where the server advertises it (GET /v2); "
        "false = always JSON.",
    )
    ca_file: ProfilePath | None = Field(
        None,
        description="CA certificate(s) that sign the cloud's https:// or grpcs:// server; default: the system's CAs.",
    )
    client_cert: ProfilePath | None = Field(
        None,
        description="This device's client certificate (PEM), for a cloud that authenticates by certificate.",
    )
    client_key: ProfilePath | None = Field(None, description="Private key (PEM) of client_cert.")
    allow_token_over_plain_text: bool = Field(
        False,
        description="Send the bearer token over plain http:// or grpc:// to a non-loopback host. "
        "Anyone on the path can read it: only on a network you trust.",
    )

    @field_validator("url")
    @classmethod
    def _empty_is_offline(cls, url: str | None) -> str | None:
        # EDGECASCADE_CLOUD__URL= (empty) switches the cloud off.
        if url is None or not url.strip():
            return None
        if not url.startswith(tuple(f"{scheme}://" for scheme in SCHEMES)):
            raise ValueError(
                f"expected a URL starting {' or '.join(f'{s}://' for s in SCHEMES)}, got {url!r}"
            )
        return url.rstrip("/")

    @field_validator("token")
    @classmethod
    def _token_is_printable_ascii(cls, token: SecretStr | None) -> SecretStr | None:
        # It goes into an HTTP header: a newline would split it (and the HTTP library's error
        # quotes the header), a non-Latin-1 character cannot be sent. The value is never shown.
        if token is not None and not all(0x21 <= ord(c) <= 0x7E for c in token.get_secret_value()):
            raise ValueError("a bearer token is printable ASCII without spaces or line breaks")
        return token

    @model_validator(mode="after")
    def _client_cert_pair(self) -> Self:
        if (self.client_cert is None) != (self.client_key is None):
            raise ValueError("give client_cert and client_key together")
        return self
