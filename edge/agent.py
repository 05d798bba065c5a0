"""The in-process agent: a profile turned into a ready cascade. The daemon, `agent predict`
and the benchmarks all build one of these; front ends only translate to and from it."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgecascade.edge.cascade import AnswerObserver, Cascade, CascadeRequest
from edgecascade.edge.cloud_client import CloudClient
from edgecascade.edge.config.profile import DeviceProfile
from edgecascade.edge.escalation_budget import EscalationBudget
from edgecascade.edge.inputs import read_input_file
from edgecascade.edge.local_model import LocalModel, backend_options
from edgecascade.edge.lookup import LookupParts
from edgecascade.edge.lookup import build as build_lookups
from edgecascade.edge.model_slot import ModelSlot
from edgecascade.edge.policies.adaptive import find_adaptive
from edgecascade.edge.policies.from_config import build_policy
from edgecascade.edge.updates.store import active_model_path
from edgecascade.shared.answer import Answer

log = logging.getLogger(__name__)


def build_cloud_client(profile: DeviceProfile) -> CloudClient:
    """The client the profile's cloud URL scheme names (edge/cloud_client/registry.py)."""
    from edgecascade.edge.cloud_client.registry import build_cloud_client as from_registry

    return from_registry(profile)


@dataclass
class Agent:
    profile: DeviceProfile
    cascade: Cascade
    lookups: LookupParts | None = None

    @classmethod
    def from_profile(
        cls,
        profile: DeviceProfile,
        *,
        cloud: CloudClient | None = None,
        observers: Sequence[AnswerObserver] = (),
        use_lookups: bool = True,
    ) -> Agent:
        """Load the active model (an installed update, else the factory model), the lookup
        table and answer cache, the escalation policy, budget and cloud client."""
        started = time.perf_counter()
        path = active_model_path(profile)
        model = LocalModel.load(path, backend_options(profile), profile.model.backend)
        lookups = build_lookups(profile) if use_lookups else None
        cascade = Cascade(
            ModelSlot(model),
            build_policy(profile.cascade, model.card.labels),
            cloud=cloud or build_cloud_client(profile),
            budget=EscalationBudget(
                profile.cascade.max_escalation_fraction, profile.cascade.max_escalations_per_minute
            ),
            lookups=[lookups.table] if lookups else (),
            hard_lookups=[lookups.cache] if lookups and lookups.cache else (),
            cloud_sinks=lookups.sinks if lookups else (),
            observers=observers,
            send_raw_input=profile.cloud.send_raw_input,
        )
        log.info("agent %s ready in %.0f ms", profile.device_id, (time.perf_counter() - started) * 1000)
        return cls(profile, cascade, lookups)

    @property
    def model(self) -> LocalModel:
        return self.cascade.slot.current

    def predict(
        self, features: np.ndarray, *, request_id: str | None = None, key: str | None = None
    ) -> Answer:
        """One encoded feature row -> an answer with provenance."""
        return self.cascade.answer(CascadeRequest(features, request_id=request_id, key=key))

    def predict_file(self, path: Path) -> Answer:
        features = read_input_file(path, self.model.card.features)
        raw = path.read_bytes() if self.cascade.send_raw_input else None
        return self.cascade.answer(CascadeRequest(features, request_id=path.name, raw=raw))

    def counters(self) -> dict[str, float]:
        """Counters of the agent's parts, for metrics and telemetry."""
        cascade = self.cascade
        out: dict[str, float] = {
            "escalations_denied_by_budget": cascade.budget.denied,
            "agreement_samples": cascade.agreement_samples,
            "agreement_hits": cascade.agreement_hits,
        }
        if cascade.agreement_samples:
            out["online_accuracy_estimate"] = cascade.agreement_hits / cascade.agreement_samples
        adaptive = find_adaptive(self.cascade.policy)
        if adaptive is not None:
            out.update(adaptive.stats())
        if self.lookups is not None:
            out.update(self.lookups.stats())
        return out

    def close(self) -> None:
        self.cascade.cloud.close()
        self.cascade.slot.close()
        if self.lookups is not None:
            self.lookups.close()
