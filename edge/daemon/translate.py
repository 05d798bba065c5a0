"""Classification answers -> V2 outputs and provenance. Requests are turned into each model's
inputs by edge/serving.py and the model's task (edge/tasks/)."""

from __future__ import annotations

from typing import Any

import numpy as np

from edgecascade.edge.answer import Answer
from edgecascade.shared.errors import ProtocolError

#: Outputs the agent can return; a request's `outputs` list picks among them.
OUTPUTS = ("label", "class_index", "confidence", "probabilities", "source")


def provenance(answer: Answer) -> dict[str, Any]:
    """The answer's provenance, as the response's `parameters.provenance[i]`."""
    return {
        "request_id": answer.request_id,
        "source": answer.source,
        "escalated": answer.escalated,
        "degraded": answer.degraded,
        "reason": answer.reason,
        "edge_model": _ref(answer.edge_model),
        "cloud_model": _ref(answer.cloud_model),
        "table_version": answer.table_version,
        "latency_ms": round(answer.latency_ms, 3),
    }


def _ref(ref: Any) -> str | None:
    return None if ref is None else f"{ref.name}:{ref.version}"


def to_outputs(answers: list[Answer], wanted: list[str] | None) -> dict[str, np.ndarray]:
    names = wanted or list(OUTPUTS)
    unknown = [n for n in names if n not in OUTPUTS]
    if unknown:
        raise ProtocolError(f"unknown output(s) {unknown}; available: {list(OUTPUTS)}", field="outputs")
    out: dict[str, np.ndarray] = {}
    for name in names:
        if name == "label":
            out[name] = np.array([a.label.encode() for a in answers], dtype=object)
        elif name == "source":
            out[name] = np.array([a.source.encode() for a in answers], dtype=object)
        elif name == "class_index":
            out[name] = np.array([a.class_index for a in answers], dtype=np.int64)
        elif name == "confidence":
            out[name] = np.array([a.confidence for a in answers], dtype=np.float32)
        else:
            out[name] = np.array([a.probabilities for a in answers], dtype=np.float32)
    return out
