"""An answer with its provenance: what every path of the cascade returns to the caller."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Source = Literal["edge", "cloud", "table", "cache"]


@dataclass(frozen=True, slots=True)
class ModelRef:
    name: str
    version: str


@dataclass(frozen=True, slots=True)
class Answer:
    """One prediction. `degraded` means a better answer was wanted but could not be had
    (cloud unreachable, breaker open, over budget); `reason` says why in a few words."""

    label: str
    class_index: int
    confidence: float
    source: Source
    edge_model: ModelRef | None
    escalated: bool = False
    degraded: bool = False
    reason: str = "confident"
    cloud_model: ModelRef | None = None
    table_version: str | None = None
    latency_ms: float = 0.0
    request_id: str | None = None
    edge_label: str | None = None  # the local model's label, on escalated answers (agreement)
    sampled: bool = False  # an easy case sent to the cloud to measure agreement
    probabilities: tuple[float, ...] = field(default=(), repr=False)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
