"""A model version's escalation thresholds go with it: when a model starts serving (an update,
a rollback, or the agent starting on an updated model), the cascade's policy is rebuilt from the
manifest's `escalation` list, or from the profile's [cascade] section for a model that has none
(the factory model). Pure logic: no MQTT or HTTP here."""

from __future__ import annotations

import logging

from edgecascade.edge.cascade import Cascade
from edgecascade.edge.config.cascade import CascadeSection, PolicySpec
from edgecascade.edge.policies.from_config import build_policy
from edgecascade.shared.manifest import Manifest

log = logging.getLogger(__name__)


class ThresholdApplier:
    """`apply` is a ModelUpdater `on_activated` callback. The manifest's thresholds replace the
    profile's policies; the rest of [cascade] (combine, sampling, adaptation) is kept. The
    cascade reads `policy` once per request, so one assignment swaps it atomically: a request
    is judged wholly by the old or wholly by the new policy."""

    def __init__(self, cascade: Cascade, section: CascadeSection, seed: int | None = None) -> None:
        self.cascade = cascade
        self.section = section
        self.seed = seed
        self.applied_version: str | None = None  # the manifest version whose thresholds serve

    def section_for(self, manifest: Manifest | None) -> CascadeSection:
        """The [cascade] section to build the policy from for `manifest`'s model."""
        if manifest is None or not manifest.escalation:
            return self.section
        specs = [PolicySpec(kind=e.kind, threshold=e.threshold) for e in manifest.escalation]
        return self.section.model_copy(update={"policies": specs})

    def apply(self, manifest: Manifest | None) -> None:
        """Rebuild and install the policy for the model now serving (`None`: no manifest).
        Raises ConfigError if the policy cannot be built (the old policy then stays)."""
        labels = manifest.card.labels if manifest is not None else self.cascade.slot.current.card.labels
        section = self.section_for(manifest)
        self.cascade.policy = build_policy(section, labels, self.seed)
        self.applied_version = manifest.version if manifest is not None else None
        log.info(
            "escalation policy for %s: %s",
            manifest.version if manifest is not None else "the profile's model",
            ", ".join(f"{p.kind} {p.threshold:g}" for p in section.policies),
        )
