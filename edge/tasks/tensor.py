"""Any other model (segmentation, landmarks, embeddings, OCR, keyword spotting, voice
activity): its own outputs under their own names. Escalates only when the card names a
score output and threshold; stateful models carry their state per session id."""

from __future__ import annotations

import time

import numpy as np

from edgecascade.edge.tasks.base import (
    OutputInfo,
    Task,
    TaskParts,
    TaskReply,
    TaskRequest,
    ask_cloud,
    provenance_record,
)
from edgecascade.edge.tasks.state import SessionStates
from edgecascade.shared.backends.base import TensorSpec
from edgecascade.shared.errors import InputError
from edgecascade.shared.model_card import ModelCard
from edgecascade.shared.v2.datatypes import datatype_of


class TensorTask(Task):
    kind = "tensor"

    def __init__(self, parts: TaskParts) -> None:
        super().__init__(parts)
        self.states = SessionStates(parts.entry.sessions)
        self.requests = 0
        self.escalated = 0
        self._state_of: object = None
        self._state_inputs: frozenset[str] = frozenset()
        self._state_specs: list[TensorSpec] = []

    def output_info(self) -> list[OutputInfo]:
        return model_outputs(self.slot.current.card, self.slot.current.backend.signature.outputs)

    def infer(self, request: TaskRequest) -> TaskReply:
        start = time.perf_counter()
        card = self.card
        if card is not self._state_of:
            # Per model (swaps change it), not per request: the state inputs and their specs.
            self._state_of = card
            self._state_inputs = frozenset(p.input for p in card.state)
            self._state_specs = [
                s for s in self.slot.current.backend.signature.inputs if s.name in self._state_inputs
            ]
        inputs = self.model_inputs(request, optional=self._state_inputs)
        session = request.session_id
        if card.state:
            inputs = self._with_state(inputs, session)
        model, outputs = self.slot.run(inputs)
        self.requests += 1
        self.parts.budget.record_request()  # the budget's fraction counts every request
        if card.state and session is not None:
            self.states.put(session, {p.input: outputs[p.output] for p in card.state})
        batch = _batch(outputs)
        source, reason, cloud_ref, degraded, escalated = "edge", "confident", None, False, False
        hard = self._hard_reason(card, outputs)
        if hard is not None:
            escalated = True
            outcome = ask_cloud(self.parts, inputs, hard, request.request_id or "")
            if outcome.outputs is not None:
                outputs = {n: outcome.outputs.get(n, a) for n, a in outputs.items()}
                source, reason, cloud_ref = "cloud", hard, outcome.model
                self.escalated += 1
            else:
                reason, degraded = outcome.degraded_reason or hard, True
        latency = (time.perf_counter() - start) * 1000.0
        record = provenance_record(
            request.request_id,
            source,
            model.ref,
            escalated=escalated,
            degraded=degraded,
            reason=reason,
            cloud_model=cloud_ref,
            latency_ms=latency,
        )
        self.notify(record, model.ref, cloud_ref)
        return TaskReply(outputs, [record] * max(batch, 1), model.card.version)

    def _with_state(self, inputs: dict[str, np.ndarray], session: str | None) -> dict[str, np.ndarray]:
        missing = [s for s in self._state_specs if s.name not in inputs]
        if not missing:
            return inputs
        if session is None:
            raise InputError(
                f"model {self.card.name!r} is stateful: send parameters.session_id (its state is kept per "
                f"session) or the state input(s) {[s.name for s in missing]}"
            )
        state = self.states.get(session, missing)
        return {**inputs, **{s.name: state[s.name] for s in missing}}

    def _hard_reason(self, card: ModelCard, outputs: dict[str, np.ndarray]) -> str | None:
        rule = card.escalation
        if rule is None:
            return None
        scores = np.asarray(outputs[rule.output], dtype=np.float64).reshape(-1)
        if scores.size == 0:
            return None
        score = float(scores[0])
        if rule.hard_when == "below" and score < rule.threshold:
            return f"{rule.output} {score:.3f} < {rule.threshold:.3f}"
        if rule.hard_when == "above" and score > rule.threshold:
            return f"{rule.output} {score:.3f} > {rule.threshold:.3f}"
        return None

    def counters(self) -> dict[str, float]:
        return {
            "requests": float(self.requests),
            "escalated": float(self.escalated),
            "sessions": float(len(self.states)),
            "sessions_dropped": float(self.states.dropped),
            "escalations_denied_by_budget": float(self.parts.budget.denied),
        }


def model_outputs(card: ModelCard, specs: tuple[TensorSpec, ...]) -> list[OutputInfo]:
    """The model's own outputs in V2 terms, from its signature (the real shapes)."""
    out = []
    for spec in specs:
        dtype = np.dtype(spec.dtype)
        out.append(OutputInfo(spec.name, datatype_of(np.zeros(0, dtype=dtype)), [int(d) for d in spec.shape]))
    return out


def _batch(outputs: dict[str, np.ndarray]) -> int:
    for arr in outputs.values():
        if arr.ndim:
            return int(arr.shape[0])
    return 1
