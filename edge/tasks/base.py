"""The task interface: a served model's request in, its V2 outputs and provenance out."""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from edgecascade.edge.answer import Answer, ModelRef, Source
from edgecascade.edge.cascade import AnswerLookup, AnswerObserver, CascadeRequest, CloudAnswerSink
from edgecascade.edge.cloud_client import CloudClient
from edgecascade.edge.config.models import ModelEntry
from edgecascade.edge.escalation_budget import EscalationBudget
from edgecascade.edge.local_model import LocalModel
from edgecascade.edge.model_slot import ModelSlot
from edgecascade.shared.backends.base import TensorSpec
from edgecascade.shared.errors import CloudError, InputError
from edgecascade.shared.features.image import DEFAULT_MAX_PIXELS
from edgecascade.shared.input_pipeline import prepare_input
from edgecascade.shared.model_card import ModelCard, TensorCard


class TensorCloud(Protocol):
    """A cloud model asked with tensors, answering with all of its outputs by name."""

    def infer_tensors(
        self, inputs: dict[str, np.ndarray], *, request_id: str, outputs: list[str] | None = None
    ) -> tuple[dict[str, np.ndarray], ModelRef]: ...


@dataclass(slots=True)
class TaskRequest:
    """One V2 request (or one `agent predict` input) for one model: `inputs` by input name,
    as decoded (BYTES images, raw tensors, with or without the batch axis)."""

    inputs: dict[str, np.ndarray]
    request_id: str | None = None
    session_id: str | None = None
    key: np.ndarray | None = None  # classification: application keys for lookup tables
    raw: list[bytes | None] | None = None


@dataclass(slots=True)
class TaskReply:
    """Outputs by V2 name (batch first) and one provenance record per example."""

    outputs: dict[str, np.ndarray]
    provenance: list[dict[str, Any]]
    model_version: str = ""


@dataclass(frozen=True, slots=True)
class OutputInfo:
    name: str
    datatype: str
    shape: list[int]


@dataclass
class TaskParts:
    """What a task is built from: its model slot, profile entry, cloud and budget; the
    classification task also uses the lookups and observers."""

    slot: ModelSlot
    entry: ModelEntry
    cloud: CloudClient
    budget: EscalationBudget
    send_raw_input: bool = False
    lookups: Sequence[AnswerLookup] = ()
    hard_lookups: Sequence[AnswerLookup] = ()
    cloud_sinks: Sequence[CloudAnswerSink] = ()
    observers: Sequence[AnswerObserver] = field(default_factory=list)
    seed: int | None = None
    #: Largest image (width x height) an input may decode to; checked from its header first.
    max_image_pixels: int = DEFAULT_MAX_PIXELS

    @property
    def tensor_cloud(self) -> TensorCloud:
        return self.cloud


class Task(abc.ABC):
    """One served model's behaviour. Built once per model; `card` follows model swaps."""

    kind: str = ""

    def __init__(self, parts: TaskParts) -> None:
        self.parts = parts
        self.slot = parts.slot
        # (model, its input specs with their cards, their names): one tuple, swapped whole
        self._prepared: tuple[object, list[tuple[TensorSpec, TensorCard | None]], frozenset[str]] = (
            None,
            [],
            frozenset(),
        )

    @property
    def card(self) -> ModelCard:
        return self.slot.current.card

    @abc.abstractmethod
    def output_info(self) -> list[OutputInfo]:
        """The V2 outputs this task serves, as model metadata lists them."""

    @abc.abstractmethod
    def infer(self, request: TaskRequest) -> TaskReply:
        """Answer one request, escalating hard cases to the cloud where configured. Raises
        InputError (a 400) for inputs that do not fit the model; never raises for cloud trouble."""

    def counters(self) -> dict[str, float]:
        return {}

    def notify(
        self,
        record: dict[str, Any],
        edge_model: ModelRef,
        cloud_model: ModelRef | None,
        *,
        label: str = "",
        confidence: float = 0.0,
    ) -> None:
        """Tell the observers (telemetry, metrics) of one example a detection or tensor task
        answered: its provenance `record` (provenance_record) as an Answer, with a summary
        `label` and `confidence` (the top detection, or none) and no features (observers keep
        none for these tasks)."""
        observers = self.parts.observers
        if not observers:
            return
        answer = Answer(
            label=label,
            class_index=-1,  # no class: these tasks answer with tensors
            confidence=confidence,
            source=_source(record["source"]),
            edge_model=edge_model,
            escalated=bool(record["escalated"]),
            degraded=bool(record["degraded"]),
            reason=str(record["reason"]),
            cloud_model=cloud_model,
            latency_ms=float(record["latency_ms"]),
            request_id=record["request_id"],
        )
        request = CascadeRequest(_NO_FEATURES, request_id=answer.request_id)
        for observe in observers:
            observe(request, answer, None)

    def close(self) -> None:
        self.parts.cloud.close()
        self.slot.close()

    # -- helpers for tasks --------------------------------------------------------------------
    def model_inputs(
        self, request: TaskRequest, optional: frozenset[str] | set[str] = frozenset()
    ) -> dict[str, np.ndarray]:
        """Every model input prepared by its pipeline; `optional` inputs may be absent."""
        return self.prepared_inputs(request, optional)[1]

    def prepared_inputs(
        self, request: TaskRequest, optional: frozenset[str] | set[str] = frozenset()
    ) -> tuple[LocalModel, dict[str, np.ndarray]]:
        """`model_inputs` and the model they were prepared for: `slot.run(inputs, model)` skips
        the backend's second check of names, shapes and dtypes when that model still serves."""
        model = self.slot.current
        prepared = self._prepared
        if model is not prepared[0]:
            # Per model (swaps change it), not per request: its input specs and their cards.
            specs = [
                (s, next((t for t in model.card.inputs if t.name == s.name), None))
                for s in model.backend.signature.inputs
            ]
            prepared = self._prepared = (model, specs, frozenset(s.name for s, _ in specs))
        _, specs, names = prepared
        given = request.inputs
        if not names.issuperset(given):
            unknown = sorted(set(given) - names)
            raise InputError(
                f"unknown input(s) {unknown}; model {model.card.name!r} takes {_expected(model.card)}"
            )
        out: dict[str, np.ndarray] = {}
        for spec, card_input in specs:
            value = given.get(spec.name)
            if value is None:
                if spec.name in optional:
                    continue
                raise InputError(
                    f"missing input {spec.name!r}; model {model.card.name!r} takes {_expected(model.card)}"
                )
            out[spec.name] = prepare_input(value, card_input, spec, max_pixels=self.parts.max_image_pixels)
        batches = {a.shape[0] for a in out.values() if a.ndim}
        if len(batches) > 1:
            raise InputError(f"inputs have different batch sizes {sorted(batches)}")
        return model, out


_NO_FEATURES = np.zeros(0, dtype=np.float32)


def _source(value: object) -> Source:
    return "cloud" if value == "cloud" else "edge"


def _expected(card: ModelCard) -> str:
    parts = []
    for t in card.inputs:
        image = " (or BYTES images)" if t.pipeline is not None else ""
        parts.append(f"{t.name}: {t.dtype} {t.shape}{image}")
    return "; ".join(parts)


def provenance_record(
    request_id: str | None,
    source: str,
    edge_model: ModelRef,
    *,
    escalated: bool = False,
    degraded: bool = False,
    reason: str = "confident",
    cloud_model: ModelRef | None = None,
    latency_ms: float = 0.0,
) -> dict[str, Any]:
    """The same provenance keys classification answers carry (edge/daemon/translate.py)."""
    return {
        "request_id": request_id,
        "source": source,
        "escalated": escalated,
        "degraded": degraded,
        "reason": reason,
        "edge_model": f"{edge_model.name}:{edge_model.version}",
        "cloud_model": None if cloud_model is None else f"{cloud_model.name}:{cloud_model.version}",
        "table_version": None,
        "latency_ms": round(latency_ms, 3),
    }


@dataclass(frozen=True, slots=True)
class CloudOutcome:
    """The cloud's outputs for a hard case, or why there are none (`degraded_reason`)."""

    outputs: dict[str, np.ndarray] | None
    model: ModelRef | None
    degraded_reason: str | None


def ask_cloud(
    parts: TaskParts,
    inputs: dict[str, np.ndarray],
    reason: str,
    request_id: str,
    outputs: list[str] | None = None,
) -> CloudOutcome:
    """Spend the budget and ask the tensor cloud for `outputs` (None: all); cloud trouble
    becomes a degraded reason."""
    over = parts.budget.try_spend()
    if over is not None:
        return CloudOutcome(None, None, f"{reason}; {over}")
    try:
        answer, model = parts.tensor_cloud.infer_tensors(inputs, request_id=request_id, outputs=outputs)
    except CloudError as exc:
        return CloudOutcome(None, None, f"{reason}; cloud unavailable: {exc}")
    return CloudOutcome(answer, model, None)
