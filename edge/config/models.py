"""[[models]]: the device's model repository, one entry per served model, each with its own
task settings, cascade, cloud model and budget. A profile with the single [model] section
(and [cascade], cloud.model) is read as a repository of one."""

from typing import Literal, Self

from pydantic import Field, model_validator

from edgecascade.edge.config.base import ModelName, ProfilePath, Section
from edgecascade.edge.config.cascade import CascadeSection
from edgecascade.shared.backends.registry import BackendName
from edgecascade.shared.model_card import DetectionCard


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
    def _band_ordered(self) -> Self:
        if self.uncertain_low > self.uncertain_high:
            raise ValueError(
                f"uncertain_low {self.uncertain_low} is above uncertain_high {self.uncertain_high}"
            )
        return self


class CloudDetectionSection(Section):
    """How the cloud detector's answer to a hard frame is read, and what it is sent."""

    answer: Literal["auto", "decoded", "outputs"] = Field(
        "auto",
        description="decoded = ask for the standard decoded outputs (detection_boxes, _scores, _classes, "
        "_labels, _count) that `edgecascade cloud serve` adds for a model whose card has a detection "
        "section; outputs = ask for the cloud model's own outputs and decode them with `card` (a peer "
        "cloud: Triton, MLServer); auto = ask for every output and use the decoded ones when present.",
    )
    card: DetectionCard | None = Field(
        None,
        description="The cloud model's own detection outputs (names, format, box format, anchors), "
        "as in a model card's detection section; unset = the edge model card's.",
    )
    labels: list[str] | None = Field(
        None, description="The cloud model's class names; unset = the edge model card's labels."
    )
    send: Literal["tensor", "image"] = Field(
        "tensor",
        description="tensor = the frame as the edge model's prepared input (the cloud model takes the "
        "same input size); image = the frame itself as a BYTES image, prepared by the cloud model's "
        "own card pipeline (another input size); needs cloud.send_raw_input = true.",
    )


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
    cloud_detection: CloudDetectionSection = Field(
        default_factory=CloudDetectionSection,
        description="Detection: the cloud detector's answer format and what it is sent.",
    )
    cloud_model: str | None = Field(
        None,
        description="Cloud model asked about this model's hard cases; unset = cloud.model for the first "
        "model, no escalation for the others.",
    )
    lookups: bool = Field(
        True,
        description="Classifiers: answer from this model's own lookup table and answer cache "
        "([lookup] settings; files under <data_dir>/lookups/<name>/, the first such model keeps "
        "<data_dir>/tables and [lookup] table/cache.path).",
    )
    table: ProfilePath | None = Field(
        None,
        description="This model's factory lookup table; unset = [lookup].table for the first model "
        "with lookups, none for the others (delivered tables replace it at run time).",
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
