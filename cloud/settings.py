"""Settings of `edgecascade cloud serve`, from flags and EDGECASCADE_SERVE__* variables (the
one scheme of shared/config_env.py). The CLI flags are derived from these fields
(cloud/server_cli.py), never declared twice."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from edgecascade.shared.config_env import variable_name
from edgecascade.shared.v2.limits import RequestLimits

#: The section of `cloud serve` in the environment scheme: EDGECASCADE_SERVE__PORT, ...
ENV_SECTION = "SERVE"


class ServerSettings(BaseSettings):
    # Worker processes build these from the parent's JSON plus this prefix (for the tokens).
    # allow_inf_nan: a size of inf MiB failed at start-up as a traceback (int(inf)).
    model_config = SettingsConfigDict(
        env_prefix=f"EDGECASCADE_{ENV_SECTION}__", extra="forbid", allow_inf_nan=False
    )

    repository: Path = Field(description="Model repository folder (<repo>/<model>/<version>/model.onnx).")
    host: str = Field(default="127.0.0.1", description="Address to listen on.")
    port: int = Field(default=8000, ge=0, le=65535, description="TCP port to listen on.")
    workers: int = Field(default=1, ge=1, le=64, description="Worker processes, each with its own models.")
    tokens_file: Path | None = Field(
        default=None, description='TOML file of per-device bearer tokens (device = "token").'
    )
    tokens: SecretStr | None = Field(
        default=None,
        description="device=token pairs, comma separated (environment only: EDGECASCADE_SERVE__TOKENS).",
    )
    artifacts_dir: Path | None = Field(
        default=None,
        description="Serve model-update artifacts from this folder at /artifacts/... with range requests "
        "(the folder `fleet push --route http --artifacts-dir` writes to).",
    )
    no_auth: bool = Field(default=False, description="Accept requests without a token (local demo only).")
    graceful_timeout_s: float = Field(
        default=30.0, gt=0, description="On SIGTERM, how long in-flight requests may take to finish."
    )
    debug_delay_ms: float = Field(
        default=0.0, ge=0, description="Delay every inference by this much (fault tests: a slow cloud)."
    )
    idempotency_ttl_s: float = Field(
        default=600.0, gt=0, description="How long a request's idempotency_key replays its answer."
    )
    idempotency_max_entries: int = Field(
        default=10_000, ge=1, description="Answers kept for replay per worker (least recently used go)."
    )
    idempotency_max_mb: float = Field(
        default=256.0,
        gt=0,
        description="Most megabytes of answers (their output tensors) kept for replay per worker; "
        "the least recently used go first.",
    )
    log_level: str = Field(default="INFO", description="Log level of worker processes.")
    max_body_mb: float = Field(
        default=16.0,
        gt=0,
        description="Largest infer request body, also after decompression (gzip/deflate); "
        "a bigger one gets 413 before it is read whole.",
    )
    max_buffered_mb: float = Field(
        default=256.0,
        gt=0,
        description="Request bodies held in memory at once per worker, across connections (at "
        "least one of max_body_mb always fits); a request past it gets 503 + Retry-After before "
        "its body is read.",
    )
    max_json_mb: float = Field(
        default=4.0,
        gt=0,
        description="Largest JSON part of an infer request (parsed JSON numbers take ~30 bytes each); "
        "larger tensors travel with the binary tensor extension.",
    )
    max_tensor_mb: float = Field(
        default=64.0, gt=0, description="Most bytes the decoded input tensors of one request may take."
    )
    max_tensor_elements: int = Field(
        default=4_000_000, ge=1, description="Most input tensor elements in one request."
    )
    allow_datatype_conversion: bool = Field(
        default=False,
        description="Convert a numeric input whose datatype is not the model's (e.g. FP64 or INT32 for "
        "FP32); off (default), such a request gets 400 naming both datatypes, as Triton answers.",
    )

    def request_limits(self) -> RequestLimits:
        """The per-request bounds these settings give (shared with the agent's decoder)."""
        return RequestLimits(
            max_body_bytes=int(self.max_body_mb * (1 << 20)),
            max_json_bytes=int(self.max_json_mb * (1 << 20)),
            max_tensor_bytes=int(self.max_tensor_mb * (1 << 20)),
            max_elements=self.max_tensor_elements,
        )

    grpc_port: int | None = Field(
        default=None,
        ge=0,
        le=65535,
        description="Also serve the V2 gRPC service (GRPCInferenceService) on this port; unset = REST only.",
    )
    grpc_max_message_bytes: int = Field(
        default=4 << 20,
        ge=1024,
        le=2**31 - 1,  # a C int in gRPC's options: past it an OverflowError in each worker
        description="Largest gRPC request or response message, in bytes.",
    )
    tls_certfile: Path | None = Field(
        default=None, description="PEM certificate (chain) of this server: serve HTTPS (and gRPC over TLS)."
    )
    tls_keyfile: Path | None = Field(default=None, description="PEM private key of tls_certfile.")
    tls_client_ca: Path | None = Field(
        default=None,
        description="CA of device client certificates: a device with a certificate it signed is "
        "authenticated by the certificate's common name, no token needed (over gRPC the "
        "certificate is then required).",
    )

    @model_validator(mode="after")
    def _tls_pairs(self) -> ServerSettings:
        if (self.tls_certfile is None) != (self.tls_keyfile is None):
            raise ValueError("give tls_certfile and tls_keyfile together")
        if self.tls_client_ca is not None and self.tls_certfile is None:
            raise ValueError(
                "tls_client_ca needs tls_certfile and tls_keyfile (client certificates need TLS)"
            )
        return self

    @property
    def scheme(self) -> str:
        return "https" if self.tls_certfile is not None else "http"

    def public_json(self) -> str:
        """These settings for worker processes, without secrets (workers read tokens themselves)."""
        return self.model_dump_json(exclude={"tokens"})


def load_server_settings(
    flags: Mapping[str, Any], environ: Mapping[str, str] | None = None
) -> ServerSettings:
    """Settings from the flags given (they win) over EDGECASCADE_SERVE__* variables; a bad value is
    a ConfigError naming its flag or variable, never showing a token."""
    from edgecascade.cloud.cli_settings import load_settings

    # The names before the one scheme: EDGECASCADE_CLOUD_PORT -> EDGECASCADE_SERVE__PORT.
    renamed = {
        f"EDGECASCADE_CLOUD_{n.upper()}": variable_name((n,), ENV_SECTION)
        for n in ServerSettings.model_fields
    }
    return load_settings(
        ServerSettings,
        flags,
        section=ENV_SECTION,
        command="edgecascade cloud serve",
        environ=environ,
        renamed=renamed,
    )
