"""[api] and [daemon]: how applications reach the agent, and how it starts and stops."""

from pydantic import Field

from edgecascade.edge.config.base import ProfilePath, Section


class ApiSection(Section):
    enabled: bool = Field(True, description="Serve the local Open Inference Protocol (V2) HTTP API.")
    host: str = Field("127.0.0.1", description="Listen address; keep it on loopback unless the LAN needs it.")
    port: int = Field(8080, ge=0, le=65535, description="Listen port (0 = pick a free one, logged at start).")
    unix_socket: ProfilePath | None = Field(
        None,
        description="Listen on this Unix socket instead of host:port (mode 0666: any local user can connect, as to the loopback port).",
    )
    max_inflight: int = Field(
        32, ge=1, description="Requests in progress before new ones get 503 + Retry-After."
    )
    workers: int = Field(2, ge=1, le=64, description="Threads running the cascade for API and MQTT requests.")
    retry_after_s: int = Field(1, ge=1, description="Retry-After sent with a 503 when the agent is full.")
    max_body_mb: float = Field(
        16.0,
        gt=0,
        description="Largest infer request body accepted (HTTP and MQTT), also after decompression; "
        "a bigger one gets 413.",
    )
    max_buffered_mb: float = Field(
        64.0,
        gt=0,
        description="Request bodies held in memory at once, across all connections (at least one of "
        "max_body_mb always fits); a request past it gets 503 + Retry-After before its body is read.",
    )
    max_json_mb: float = Field(
        4.0,
        gt=0,
        description="Largest JSON part of a request (parsed JSON numbers take ~30 bytes each); larger "
        "tensors travel with the binary tensor extension. A bigger one gets 413 before it is parsed.",
    )
    max_tensor_elements: int = Field(
        1_000_000, ge=1, description="Most input tensor elements in one request; more gets 413."
    )
    max_image_pixels: int = Field(
        8_388_608,
        ge=1,
        description="Largest image (width x height, read from its header before decoding) a request "
        "may send; a bigger one gets 400 without being decoded.",
    )
    convert_datatypes: bool = Field(
        False,
        description="Convert a numeric features input that is not FP32 (FP64, INT32, UINT8, BOOL); "
        "off (default), it gets 400 naming both datatypes, as Triton answers.",
    )


class DaemonSection(Section):
    shutdown_timeout_s: float = Field(
        10.0,
        gt=0,
        le=3600,
        description="On SIGTERM: time to finish in-flight work and flush telemetry before exiting "
        "(systemd's TimeoutStopSec must be longer).",
    )
    mqtt_requests: bool = Field(
        True, description="Answer inference requests on the device's MQTT request topic."
    )
    log_json: bool = Field(False, description="Log JSON lines (for journald or a log shipper).")
