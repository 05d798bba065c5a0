"""[updates]: signed model updates over MQTT or HTTP, tested in a child process, rolled back on trouble."""

from typing import Self

from pydantic import Field, model_validator

from edgecascade.edge.config.base import ProfilePath, Section


class UpdatesSection(Section):
    enabled: bool = Field(False, description="Accept model updates (needs [mqtt] enabled and a public key).")
    tables: bool = Field(
        True, description="Also accept lookup-table updates (signed like models, on their own topics)."
    )
    public_key: str | None = Field(
        None, description="Fleet signing public key: base64 of the 32 raw Ed25519 bytes, or PEM text."
    )
    public_key_file: ProfilePath | None = Field(
        None, description="File holding the fleet public key (base64 or PEM); used if public_key is unset."
    )
    max_artifact_mb: float = Field(
        64.0, gt=0, description="Refuse artifacts (and deltas) larger than this many MiB."
    )
    stall_timeout_s: float = Field(
        30.0, gt=0, description="A download with no new chunk for this long is retried (re-subscribed)."
    )
    download_timeout_s: float = Field(
        600.0, gt=0, description="Give up on a download (state failed) after this long."
    )
    http_timeout_s: float = Field(10.0, gt=0, description="Per-request timeout of the HTTP route.")
    http_range_kb: int = Field(
        4096,
        ge=1,
        description="Largest Range request of the HTTP route, in KiB; a cut re-fetches at most this much.",
    )
    http_ca: ProfilePath | None = Field(
        None, description="CA certificate for an https:// artifact server; default: the system's CAs."
    )
    check_timeout_s: float = Field(
        30.0, gt=0, description="The candidate check in a child process must finish within this."
    )
    watch_window_s: float = Field(
        60.0, ge=0, description="After a swap, watch health this long; 0 = no automatic rollback."
    )
    max_error_rate: float = Field(
        0.05, ge=0.0, le=1.0, description="Roll back if the error rate in the watch window exceeds this."
    )
    min_requests: int = Field(
        20, ge=1, description="Judge the error rate only after this many requests in the window."
    )

    @model_validator(mode="after")
    def _key_when_enabled(self) -> Self:
        if self.enabled and not (self.public_key or self.public_key_file):
            raise ValueError("updates.enabled needs public_key or public_key_file")
        return self
