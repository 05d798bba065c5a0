"""[telemetry]: the durable on-device buffer, aggregation and the MQTT uplink."""

from typing import Literal

from pydantic import Field, field_validator

from edgecascade.edge.config.base import ProfilePath, Section


class HardExamplesSection(Section):
    enabled: bool = Field(
        False,
        description="Keep inputs the cloud was asked about (encoded features) as hard_case records for "
        "retraining. Off by default: no input data leaves the device unless this is set.",
    )
    max_per_minute: int = Field(
        30, ge=1, description="Rate cap on hard-case records; more are counted and not kept."
    )
    include_raw: bool = Field(
        False, description="Also keep the raw input (base64); needs cloud.send_raw_input-level consent."
    )


class TelemetrySection(Section):
    enabled: bool = Field(True, description="Record telemetry at all (the uplink also needs mqtt.enabled).")
    sink: str = Field(
        "mqtt",
        description="Where buffered records go: a name from edge/telemetry/sinks.py's SINKS "
        "(mqtt = the fleet's ingester over MQTT, needs mqtt.enabled).",
    )
    buffer_path: ProfilePath | None = Field(
        None, description="SQLite buffer file; default <data_dir>/telemetry.sqlite3."
    )
    max_bytes: int = Field(
        64 * 1024 * 1024, ge=4096, description="Buffer cap in bytes of record bodies; beyond it evict."
    )
    max_age_s: float = Field(
        7 * 24 * 3600.0,
        gt=0,
        description="Records held longer than this are evicted (counted as drops), in seconds of the "
        "agent's running time: a wall-clock step (NTP on a board without a real-time clock) or time "
        "powered off ages nothing.",
    )
    flush_interval_ms: int = Field(
        50,
        ge=1,
        le=5000,
        description="The writer commits queued records at least this often: the most a power cut "
        "or kill -9 can lose is what arrived in this window (never an acknowledged record).",
    )
    flush_batch: int = Field(512, ge=1, description="...or as soon as this many records are queued.")
    synchronous: Literal["full", "normal"] = Field(
        "full",
        description="SQLite WAL sync: full = a commit survives a power cut; normal = it survives a "
        "process crash, a power cut may roll back the last commits (faster on SD cards).",
    )
    inference_sample_rate: float = Field(
        1.0,
        ge=0.0,
        le=1.0,
        description="Fraction of routine inference records kept (escalated/degraded ones are always "
        "kept); metrics count every request regardless.",
    )
    metrics_interval_s: float = Field(60.0, gt=0, description="Aggregation interval of metrics records.")
    uplink_batch: int = Field(200, ge=1, le=5000, description="Records per MQTT message.")
    uplink_window: int = Field(8, ge=1, le=100, description="Batches in flight awaiting PUBACK at once.")
    uplink_max_records_per_s: float = Field(
        5000.0,
        gt=0,
        description="Backlog drain rate cap, so a long outage's backlog does not starve the rest.",
    )
    uplink_max_bytes: int = Field(
        512 * 1024,
        ge=4096,
        le=1024 * 1024,
        description="Most bytes of record bodies per MQTT message (one record always fits: "
        "a body over 512 KiB is refused when recorded). Keep under the ingester's --max-payload-kb.",
    )
    puback_timeout_s: float = Field(10.0, gt=0, description="Resend a batch if no PUBACK came in this time.")
    ack_timeout_s: float = Field(
        15.0,
        gt=0,
        description="Resend a batch if the ingester has not acknowledged storing it in this time "
        "(records leave the buffer only on that acknowledgement, never on the broker's PUBACK).",
    )
    ack_timeout_max_s: float = Field(
        300.0,
        gt=0,
        description="The wait for an acknowledgement doubles after each miss (the ingester is away) up to this.",
    )
    hard_examples: HardExamplesSection = Field(
        default_factory=HardExamplesSection,
        description="Opt-in sampling of hard examples for retraining.",
    )

    @field_validator("sink")
    @classmethod
    def _known_sink(cls, value: str) -> str:
        from edgecascade.edge.telemetry.sinks import SINKS

        if value not in SINKS:
            raise ValueError(f"unknown telemetry sink {value!r}; known sinks: {sorted(SINKS)}")
        return value
