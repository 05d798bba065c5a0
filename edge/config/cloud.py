"""[cloud]: the V2 inference server hard cases are escalated to, and how to call it."""

from __future__ import annotations

from pydantic import Field, SecretStr, field_validator

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
    binary_tensors: bool = Field(True, description="Use the V2 binary tensor extension for request bodies.")

    @field_validator("url")
    @classmethod
    def _empty_is_offline(cls, url: str | None) -> str | None:
        # EDGECASCADE_CLOUD__URL= (empty) switches the cloud off.
        if url is None or not url.strip():
            return None
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"expected an http:// or https:// URL, got {url!r}")
        return url.rstrip("/")
