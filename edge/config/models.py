"""[[models]]: the device's model repository, one entry per served model, each with its own
task settings, cascade, cloud model and budget. A profile with the single [model] section
(and [cascade], cloud.model) is read as a repository of one."""

from __future__ import annotations

from pydantic import Field, model_validator

from edgecascade.edge.config.base import ModelName, ProfilePath, Section
from edgecascade.edge.config.cascade import CascadeSection
from edgecascade.shared.backends.registry import BackendName


class DetectionPolicySection(Section):
    """When a detector's frame goes to the cloud detector."""

    uncertain_low: float = Field(
        0.3,
        ge=0.0,
        le=1.0,
        description="A detection scoring in [uncertain_low, uncertain_high) is uncertain.",
    )
    uncertain_high: float = Field(0.6, ge=0.0, le=1.0, description="Upper end of the uncertain band.")
    min_count: int | None = Field(
        None, ge=0, description="Count rule: hard if fewer confident detections than this."
    )
    max_count: int | None = Field(
        None, ge=0, description="Count rule: hard if more confident detections than this."
    )
    report_threshold: float = Field(
        0.5, ge=0.0, le=1.0, description="Detections at or above this score are reported (and counted)."
    )

    @model_validator(mode="after")
    def _band_ordered(self) -> DetectionPolicySection:
        if self.uncertain_low > self.uncertain_high:
            raise ValueError(
                f"uncertain_low {self.uncertain_low} is above uncertain_high {self.uncertain_high}"
            )
        return self


class ModelHealthSection(Section):
    """This model's error-rate limits after an update; unset = the [updates] value."""

    max_error_rate: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        description="Roll this model back if its error rate in the watch window exceeds this.",
    )
    min_requests: int | None = Field(
        None, ge=1, description="Judge this model's error rate only after this many calls in the window."
    )


class ModelEntry(Section):
    """One served model."""

    name: ModelName = Field(
        description="Model name: the V2 URL /v2/models/<name>, MQTT requests, and its update topics "
        "(edgecascade/<fleet>/models/<name>/...) and store (<data_dir>/models/<name>/) use it; one "
        "topic level, not starting with '.'."
    )
    path: ProfilePath = Field(
        description="Model artifact (.tflite/.onnx), or a path without extension to pick by "
        "runtime.backend_preference. Its card <file>.card.json (`edgecascade models import`) sits beside it."
    )
    backend: BackendName | None = Field(
        None, description="Override the backend chosen from the file extension."
    )
    cascade: CascadeSection | None = Field(
        None, description="Classification escalation and budget; default: the profile's [cascade]."
    )
    detection: DetectionPolicySection = Field(
        default_factory=DetectionPolicySection, description="Detection: when a frame is escalated."
    )
    cloud_model: str | None = Field(
        None,
        description="Cloud model asked about this model's hard cases; unset = cloud.model for the first "
        "model, no escalation for the others.",
    )
    lookups: bool = Field(
        True, description="Use the profile's [lookup] table and answer cache (the first model only)."
    )
    sessions: int = Field(
        1024,
        ge=1,
        le=1_000_000,
        description="Stateful models: sessions whose state is kept (least recent dropped).",
    )
    health: ModelHealthSection = Field(
        default_factory=ModelHealthSection,
        description="Error-rate limits of this model's watch window after an update (default: [updates]).",
    )
