"""Settings of `edgecascade cloud serve`, from flags and EDGECASCADE_CLOUD_* variables.
The CLI flags are derived from these fields (cloud/server_cli.py), never declared twice."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from edgecascade.shared.v2.limits import RequestLimits


class ServerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="EDGECASCADE_CLOUD_", extra="forbid")

    repository: Path = Field(description="Model repository folder (<repo>/<model>/<version>/model.onnx).")
    host: str = Field(default="127.0.0.1", description="Address to listen on.")
    port: int = Field(default=8000, ge=0, le=65535, description="TCP port to listen on.")
    workers: int = Field(default=1, ge=1, le=64, description="Worker processes, each with its own models.")
    tokens_file: Path | None = Field(
        default=None, description='TOML file of per-device bearer tokens (device = "token").'
    )
    tokens: SecretStr | None = Field(
        default=None,
        description="device=token pairs, comma separated (environment only: EDGECASCADE_CLOUD_TOKENS).",
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
    log_level: str = Field(default="INFO", description="Log level of worker processes.")
    max_body_mb: float = Field(
        default=16.0,
        gt=0,
        description="Largest infer request body, also after decompression (gzip/deflate); "
        "a bigger one gets 413 before it is read whole.",
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

    def public_json(self) -> str:
        """These settings for worker processes, without secrets (workers read tokens themselves)."""
        return self.model_dump_json(exclude={"tokens"})
