"""The two-phase cascade: lookups -> local model -> escalation policy -> cloud -> answer.

This module knows nothing of HTTP or MQTT: the daemon's front ends call `answer()`, and
telemetry, caches and deferred escalation plug in as lookups and observers."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

import numpy as np

from edgecascade.edge.answer import Answer
from edgecascade.edge.cloud_client import CloudClient, NullCloudClient
from edgecascade.edge.escalation_budget import EscalationBudget
from edgecascade.edge.local_model import LocalModel
from edgecascade.edge.model_slot import ModelSlot
from edgecascade.edge.policies import Decision, EscalationPolicy, MaxProbabilityPolicy
from edgecascade.shared.errors import CircuitOpenError, CloudAuthError, CloudError

log = logging.getLogger(__name__)


@dataclass(slots=True)
class CascadeRequest:
    """One example: `features` is one encoded row; `key` an application key (SKU, barcode)
    for lookup tables; `raw` the raw input, sent to the cloud only if the profile allows."""

    features: np.ndarray
    request_id: str | None = None
    key: str | None = None
    raw: bytes | None = None


@dataclass(slots=True)
class PendingEscalation:
    """A hard case after the local phase: its local answer and why it is hard."""

    request: CascadeRequest
    local: Answer
    decision: Decision
    start: float


class AnswerLookup(Protocol):
    """Answers a request without the model (lookup table, cloud-answer cache), or returns None."""

    def lookup(self, request: CascadeRequest) -> Answer | None: ...


class CloudAnswerSink(Protocol):
    """Told of every fresh cloud answer (the cloud-answer cache stores it)."""

    def remember(self, request: CascadeRequest, answer: Answer) -> None: ...


#: Called after every answer, e.g. telemetry or deferred escalation. Must not raise or block.
AnswerObserver = Callable[[CascadeRequest, Answer, Decision | None], None]


class Cascade:
    """`lookups` (lookup tables) answer before the model; `hard_lookups` (the cloud-answer
    cache) answer hard cases before the cloud; `cloud_sinks` learn every fresh cloud answer."""

    def __init__(
        self,
        slot: ModelSlot,
        policy: EscalationPolicy | None = None,
        *,
        cloud: CloudClient | None = None,
        budget: EscalationBudget | None = None,
        lookups: Sequence[AnswerLookup] = (),
        hard_lookups: Sequence[AnswerLookup] = (),
        cloud_sinks: Sequence[CloudAnswerSink] = (),
        observers: Sequence[AnswerObserver] = (),
        send_raw_input: bool = False,
    ) -> None:
        self.slot = slot
        self.policy = policy or MaxProbabilityPolicy(0.8)
        self.cloud = cloud or NullCloudClient()
        self.budget = budget or EscalationBudget()
        self.lookups = list(lookups)
        self.hard_lookups = list(hard_lookups)
        self.cloud_sinks = list(cloud_sinks)
        self.observers = list(observers)
        self.send_raw_input = send_raw_input
        self._auth_error_logged = False
        self.agreement_samples = 0
        self.agreement_hits = 0

    def answer(self, request: CascadeRequest) -> Answer:
        """Answer one request. Never raises for cloud trouble: the local answer comes back degraded."""
        result = self.local_phase(request)
        return result if isinstance(result, Answer) else self.cloud_phase(result)

    def local_phase(self, request: CascadeRequest) -> Answer | PendingEscalation:
        """Phase one, on the device only (microseconds, no I/O but the lookup stores): lookups,
        the model, the policy, the answer cache and the budget. Returns the final answer, or
        a PendingEscalation for `cloud_phase`. Front ends on an event loop run this inline and
        hand only escalations to a thread."""
        start = time.perf_counter()
        self.budget.record_request()
        for lookup in self.lookups:
            found = lookup.lookup(request)
            if found is not None:
                return self._finish(request, found, None, start)
        model, probs = self.slot.probabilities(request.features[None, ...])
        row = probs[0]
        top = int(row.argmax())
        decision = self.policy.decide(row)
        if not decision.hard:
            # The common path: build the answer once, with its latency, and return.
            answer = _local_answer(model, row, top, decision, request, start)
            for observe in self.observers:
                observe(request, answer, decision)
            return answer
        local = _local_answer(model, row, top, decision, request, None)
        if not decision.sampled:
            # A repeated hard case: the cloud's earlier answer (answer cache), also offline.
            # Consulted only for hard cases, so easy ones never pay for it.
            for lookup in self.hard_lookups:
                found = lookup.lookup(request)
                if found is not None:
                    return self._finish(
                        request,
                        _replace(found, edge_model=local.edge_model, edge_label=local.label),
                        decision,
                        start,
                    )
        over = self.budget.try_spend()
        if over is not None:
            answer = _replace(local, escalated=False, degraded=True, reason=f"{decision.reason}; {over}")
            return self._finish(request, answer, decision, start)
        return PendingEscalation(request, local, decision, start)

    def cloud_phase(self, pending: PendingEscalation) -> Answer:
        """Phase two: ask the cloud (bounded by the client's deadline) and finish the answer."""
        answer = self._escalate(pending.request, pending.local, pending.decision)
        return self._finish(pending.request, answer, pending.decision, pending.start)

    def _escalate(self, request: CascadeRequest, local: Answer, decision: Decision) -> Answer:
        if decision.sampled:
            # An easy case sampled for agreement: a cloud failure costs nothing, keep the local answer.
            try:
                return self._ask_cloud(request, local, decision)
            except CloudError:
                return _replace(local, reason="confident")
        try:
            return self._ask_cloud(request, local, decision)
        except CloudAuthError as exc:
            if not self._auth_error_logged:  # once, not per request
                log.error("cloud refused this device's token: %s; check cloud.token in the profile", exc)
                self._auth_error_logged = True
            return _replace(
                local, escalated=True, degraded=True, reason=f"{decision.reason}; cloud auth failed"
            )
        except CircuitOpenError:
            return _replace(
                local, escalated=True, degraded=True, reason=f"{decision.reason}; cloud breaker open"
            )
        except CloudError as exc:
            return _replace(
                local, escalated=True, degraded=True, reason=f"{decision.reason}; cloud unavailable: {exc}"
            )

    def _ask_cloud(self, request: CascadeRequest, local: Answer, decision: Decision) -> Answer:
        cloud = self.cloud.infer(
            request.features,
            request_id=request.request_id or "",
            raw_input=request.raw if self.send_raw_input else None,
        )
        top = int(cloud.probabilities.argmax())
        model = self.slot.current
        answer = Answer(
            label=model.card.labels[top] if top < len(model.card.labels) else str(top),
            class_index=top,
            confidence=float(cloud.probabilities[top]),
            source="cloud",
            edge_model=local.edge_model,
            cloud_model=cloud.model,
            escalated=True,
            reason=decision.reason,
            request_id=request.request_id,
            probabilities=tuple(cloud.probabilities.tolist()),
            edge_label=local.label,
            sampled=decision.sampled,
        )
        if decision.sampled:
            # Random samples of easy cases: how often the edge agrees with the cloud is an
            # online estimate of the edge model's accuracy, reported with telemetry.
            self.agreement_samples += 1
            self.agreement_hits += answer.label == local.label
        for sink in self.cloud_sinks:
            sink.remember(request, answer)
        return answer

    def _finish(
        self, request: CascadeRequest, answer: Answer, decision: Decision | None, start: float
    ) -> Answer:
        answer = _replace(answer, latency_ms=(time.perf_counter() - start) * 1000.0)
        for observe in self.observers:
            observe(request, answer, decision)
        return answer


def _local_answer(
    model: LocalModel,
    row: np.ndarray,
    top: int,
    decision: Decision,
    request: CascadeRequest,
    start: float | None,
) -> Answer:
    return Answer(
        label=model.card.labels[top],
        class_index=top,
        confidence=float(row[top]),
        source="edge",
        edge_model=model.ref,
        reason=decision.reason,
        request_id=request.request_id,
        probabilities=tuple(row.tolist()),
        latency_ms=0.0 if start is None else (time.perf_counter() - start) * 1000.0,
    )


def _replace(answer: Answer, **changes: object) -> Answer:
    return replace(answer, **changes)  # type: ignore[arg-type]
