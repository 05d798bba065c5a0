"""[api] and [daemon]: how applications reach the agent, and how it starts and stops."""

from __future__ import annotations

from pydantic import Field

from edgecascade.edge.config.base import ProfilePath, Section


class ApiSection(Section):
    enabled: bool = Field(True, description="Serve the local Open Inference Protocol (V2) HTTP API.")
    host: str = Field("127.0.0.1", description="Listen address; keep it on loopback unless the LAN needs it.")
    port: int = Field(8080, ge=0, le=65535, description="Listen port (0 = pick a free one, logged at start).")
    unix_socket: ProfilePath | None = Field(
        None, description="Listen on this Unix socket instead of host:port."
    )
    max_inflight: int = Field(
        32, ge=1, description="Requests in progress before new ones get 503 + Retry-After."
    )
    workers: int = Field(2, ge=1, le=64, description="Threads running the cascade for API and MQTT requests.")
    retry_after_s: int = Field(1, ge=1, description="Retry-After sent with a 503 when the agent is full.")
    max_body_mb: float = Field(
        16.0, gt=0, description="Largest infer request body accepted; a bigger one gets 413."
    )


class DaemonSection(Section):
    shutdown_timeout_s: float = Field(
        10.0,
        gt=0,
        description="On SIGTERM: time to finish in-flight work and flush telemetry before exiting.",
    )
    mqtt_requests: bool = Field(
        True, description="Answer inference requests on the device's MQTT request topic."
    )
    log_json: bool = Field(False, description="Log JSON lines (for journald or a log shipper).")
