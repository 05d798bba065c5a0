"""The in-process agent: a profile turned into a ready cascade. The daemon, `agent predict`
and the benchmarks all build one of these; front ends only translate to and from it."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge.cascade import Cascade, CascadeRequest
from edge.cloud_client import CloudClient, NullCloudClient
from edge.config.profile import DeviceProfile
from edge.escalation_budget import EscalationBudget
from edge.inputs import read_input_file
from edge.local_model import LocalModel, backend_options, resolve_artifact
from edge.model_slot import ModelSlot
from edge.policies.from_config import build_policy
from shared.answer import Answer

log = logging.getLogger(__name__)


def build_cloud_client(profile: DeviceProfile) -> CloudClient:
    if profile.cloud.url is None:
        return NullCloudClient()
    from edge.cloud_client.v2_http import V2HttpCloudClient

    return V2HttpCloudClient.from_profile(profile)


@dataclass
class Agent:
    profile: DeviceProfile
    cascade: Cascade
    closers: list[object] = field(default_factory=list)

    @classmethod
    def from_profile(cls, profile: DeviceProfile, *, cloud: CloudClient | None = None) -> Agent:
        started = time.perf_counter()
        path = resolve_artifact(profile.model.path, list(profile.runtime.backend_preference))
        model = LocalModel.load(path, backend_options(profile), profile.model.backend)
        cascade = Cascade(
            ModelSlot(model),
            build_policy(profile.cascade, model.card.labels),
            cloud=cloud or build_cloud_client(profile),
            budget=EscalationBudget(
                profile.cascade.max_escalation_fraction, profile.cascade.max_escalations_per_minute
            ),
            send_raw_input=profile.cloud.send_raw_input,
        )
        log.info("agent %s ready in %.0f ms", profile.device_id, (time.perf_counter() - started) * 1000)
        return cls(profile, cascade)

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

    def close(self) -> None:
        self.cascade.cloud.close()
        self.cascade.slot.close()
