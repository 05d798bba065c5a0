"""The escalation-policy kinds, named once. The device profile's [cascade] policies, the
manifest's tuned thresholds and `models tune --policy` all read their choices from here; the
edge's policy registry (edge/policies/registry.py) has one implementation for each."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator

#: kind -> what its threshold means (used in help texts and error messages).
POLICY_KINDS: dict[str, str] = {
    "max_prob": "hard if the top probability < threshold",
    "margin": "hard if top-1 minus top-2 probability < threshold",
    "entropy": "hard if the normalized entropy > threshold",
}


def check_policy_kind(kind: str) -> str:
    """`kind` if it is a known policy kind, else ValueError naming the known ones."""
    if kind not in POLICY_KINDS:
        raise ValueError(f"unknown escalation policy kind {kind!r}; known kinds: {', '.join(POLICY_KINDS)}")
    return kind


#: A policy kind in a pydantic model: a string checked against POLICY_KINDS.
PolicyKind = Annotated[str, AfterValidator(check_policy_kind)]
