"""Settings of `edgecascade cloud serve`, from flags and EDGECASCADE_SERVE__* variables (the
one scheme of shared/config_env.py). The CLI flags are derived from these fields
(cloud/server_cli.py), never declared twice."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from edgecascade.shared.config_env import variable_name

#: The section of `cloud serve` in the environment scheme: EDGECASCADE_SERVE__PORT, ...
ENV_SECTION = "SERVE"


class ServerSettings(BaseSettings):
    # Worker processes build these from the parent's JSON plus this prefix (for the tokens).
    model_config = SettingsConfigDict(env_prefix=f"EDGECASCADE_{ENV_SECTION}__", extra="forbid")

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
    log_level: str = Field(default="INFO", description="Log level of worker processes.")

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
