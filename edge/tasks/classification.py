"""Classifiers of any number of classes, logits or probabilities, float or quantized: the
two-phase cascade (edge/cascade.py) with lookups, budget, answer cache and observers."""

from __future__ import annotations

from typing import Any

import numpy as np

from edgecascade.edge.answer import Answer
from edgecascade.edge.cascade import Cascade, CascadeRequest
from edgecascade.edge.config.cascade import CascadeSection
from edgecascade.edge.daemon.translate import OUTPUTS, provenance, to_outputs
from edgecascade.edge.policies.adaptive import find_adaptive
from edgecascade.edge.policies.from_config import build_policy
from edgecascade.edge.tasks.base import OutputInfo, Task, TaskParts, TaskReply, TaskRequest
from edgecascade.shared.errors import InputError

#: The cascade's outputs; the model's own scores output is served too, under its own name.
ANSWER_OUTPUTS = OUTPUTS


class ClassificationTask(Task):
    kind = "classification"

    def __init__(self, parts: TaskParts, section: CascadeSection) -> None:
        super().__init__(parts)
        self.cascade = Cascade(
            parts.slot,
            build_policy(section, parts.slot.current.card.labels, parts.seed),
            cloud=parts.cloud,
            budget=parts.budget,
            lookups=parts.lookups,
            hard_lookups=parts.hard_lookups,
            cloud_sinks=parts.cloud_sinks,
            observers=parts.observers,
            send_raw_input=parts.send_raw_input,
        )
        self._names_of: object = None
        self._outputs: tuple[str | None, list[str]] = (None, [])

    def output_info(self) -> list[OutputInfo]:
        classes = len(self.card.labels)
        info = [
            OutputInfo("label", "BYTES", [-1]),
            OutputInfo("class_index", "INT64", [-1]),
            OutputInfo("confidence", "FP32", [-1]),
            OutputInfo("probabilities", "FP32", [-1, classes]),
            OutputInfo("source", "BYTES", [-1]),
        ]
        own = self._own_output()
        if own is not None:
            info.append(OutputInfo(own, "FP32", [-1, classes]))
        return info

    def _own_output(self) -> str | None:
        """The model's scores output, served under its own name when it holds probabilities
        (logits are not kept: `probabilities` is their softmax; nor are scores the card
        calibrates: `probabilities` is the calibrated softmax, edge/local_model.py)."""
        own = self.card.probabilities_output
        if own is None or own in ANSWER_OUTPUTS or self.card.logits or self.card.calibration:
            return None
        return own

    def cascade_requests(self, request: TaskRequest) -> list[CascadeRequest]:
        """One CascadeRequest per example, its features prepared by the input's pipeline."""
        model = self.slot.current
        if len(request.inputs) != 1:
            raise InputError(
                f"model {model.card.name!r} takes one input, {model.input_name!r} (a tensor or BYTES "
                f"images); got {sorted(request.inputs)}"
            )
        ((name, value),) = request.inputs.items()
        if name != model.input_name and value.dtype != object:
            raise InputError(
                f"unknown input {name!r}; model {model.card.name!r} takes {model.input_name!r} "
                "(a tensor or BYTES images)"
            )
        batch = self.model_inputs(TaskRequest({model.input_name: value}))[model.input_name]
        raws: list[bytes | None] = (
            [bytes(v) if not isinstance(v, str) else v.encode() for v in value.reshape(-1)]
            if value.dtype == object
            else [None] * len(batch)
        )
        keys = request.key
        if keys is not None and keys.size != len(batch):
            raise InputError(f"input 'key' has {keys.size} elements for {len(batch)} examples")
        key_list = [None] * len(batch) if keys is None else [_text(k) for k in keys.reshape(-1)]
        base = request.request_id or ""
        return [
            CascadeRequest(
                row, request_id=f"{base}#{i}" if len(batch) > 1 else (base or None), key=key, raw=raw
            )
            for i, (row, key, raw) in enumerate(zip(batch, key_list, raws, strict=True))
        ]

    def _all_outputs(self) -> tuple[str | None, list[str]]:
        """(own scores output, every output name), per model (swaps change it), not per request."""
        card = self.card
        if card is not self._names_of:
            self._names_of = card
            self._outputs = (self._own_output(), [o.name for o in self.output_info()])
        return self._outputs

    def reply(self, answers: list[Answer], wanted: list[str] | None) -> TaskReply:
        own, every = self._all_outputs()
        names = wanted or every
        standard = [n for n in names if n != own]
        outputs = to_outputs(answers, standard) if standard else {}
        if own is not None and own in names:
            outputs[own] = np.array([a.probabilities for a in answers], dtype=np.float32)
        ordered = {n: outputs[n] for n in names}
        return TaskReply(ordered, [provenance(a) for a in answers], self.card.version)

    def infer(self, request: TaskRequest, wanted: list[str] | None = None) -> TaskReply:
        answers = [self.cascade.answer(r) for r in self.cascade_requests(request)]
        return self.reply(answers, wanted)

    def counters(self) -> dict[str, float]:
        """Budget refusals, agreement samples (and the accuracy they estimate), adaptive stats."""
        cascade = self.cascade
        out: dict[str, float] = {
            "escalations_denied_by_budget": cascade.budget.denied,
            "agreement_samples": cascade.agreement_samples,
            "agreement_hits": cascade.agreement_hits,
        }
        if cascade.agreement_samples:
            out["online_accuracy_estimate"] = cascade.agreement_hits / cascade.agreement_samples
        adaptive = find_adaptive(cascade.policy)
        if adaptive is not None:
            out.update(adaptive.stats())
        return out


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
