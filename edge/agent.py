"""The in-process agent: a profile turned into a repository of ready models, each with its
task (classification cascade, detection, tensor). The daemon, `agent predict` and the
benchmarks all build one of these; front ends only translate to and from it."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgecascade.edge.answer import Answer
from edgecascade.edge.cascade import AnswerObserver, Cascade, CascadeRequest
from edgecascade.edge.cloud_client import CloudClient, NullCloudClient
from edgecascade.edge.config.models import ModelEntry
from edgecascade.edge.config.profile import DeviceProfile
from edgecascade.edge.escalation_budget import EscalationBudget
from edgecascade.edge.inputs import encode_input_bytes, read_input_bytes
from edgecascade.edge.local_model import LocalModel, backend_options
from edgecascade.edge.lookup import LookupParts
from edgecascade.edge.lookup import build as build_lookups
from edgecascade.edge.model_slot import ModelSlot
from edgecascade.edge.tasks import Task, TaskParts, TaskReply, TaskRequest, build_task
from edgecascade.edge.tasks.classification import ClassificationTask
from edgecascade.edge.updates.store import active_model_path
from edgecascade.shared.errors import ModelError, NotFoundError, ProtocolError
from edgecascade.shared.features import FeatureSpec

log = logging.getLogger(__name__)


def build_cloud_client(profile: DeviceProfile, model: str | None = None) -> CloudClient:
    """The client the profile's cloud URL scheme names (edge/cloud_client/registry.py) for
    `model` (default: cloud.model), or the do-nothing client offline."""
    from edgecascade.edge.cloud_client.registry import build_cloud_client as from_registry

    return from_registry(profile, model)


def model_files(profile: DeviceProfile) -> list[tuple[Path, str | None]]:
    """(artifact, backend override) of every model the profile serves, as the agent resolves them."""
    # Each model from its own update store (an installed update or rollback), else its factory file.
    return [(active_model_path(profile, entry), entry.backend) for entry in profile.model_entries()]


@dataclass
class ServedModel:
    """One model of the repository: its profile entry and the task serving it."""

    entry: ModelEntry
    task: Task

    @property
    def name(self) -> str:
        return self.entry.name

    @property
    def slot(self) -> ModelSlot:
        return self.task.slot


@dataclass(frozen=True)
class ModelWiring:
    """What a per-model observer factory is told of one model while the agent builds it: its
    entry, task kind, slot, cloud client and lookups (None: not a classifier with lookups)."""

    entry: ModelEntry
    kind: str
    slot: ModelSlot
    cloud: CloudClient
    lookups: LookupParts | None

    @property
    def name(self) -> str:
        return self.entry.name


#: Called once per model while the agent is built; returns the observers of that model's answers
#: (telemetry naming the model, deferral for one classifier...). Built before the task, so no
#: observer is added to a running cascade afterwards.
ObserversFor = Callable[[ModelWiring], Sequence[AnswerObserver]]


def _no_model_observers(model: ModelWiring) -> Sequence[AnswerObserver]:
    return ()


@dataclass
class Agent:
    profile: DeviceProfile
    models: dict[str, ServedModel]
    #: Per classifier with lookups: its own table and answer cache, by model name.
    model_lookups: dict[str, LookupParts] = field(default_factory=dict)
    default_name: str = field(default="")

    @classmethod
    def from_profile(
        cls,
        profile: DeviceProfile,
        *,
        cloud: CloudClient | None = None,
        observers: Sequence[AnswerObserver] = (),
        observers_for: ObserversFor = _no_model_observers,
        use_lookups: bool = True,
    ) -> Agent:
        """Load every model (each from its installed update if there is one), its card
        checked against it, and its task with policy, budget and cloud client; every
        classifier with `lookups` on also gets its own lookup table and answer cache. Each
        model's answers go to `observers` and to what `observers_for` returns for it. `cloud`
        replaces the first model's cloud client (tests, in-process clouds)."""
        started = time.perf_counter()
        models: dict[str, ServedModel] = {}
        all_lookups: dict[str, LookupParts] = {}
        try:
            for i, (entry, (path, _)) in enumerate(
                zip(profile.model_entries(), model_files(profile), strict=True)
            ):
                client = (
                    cloud if i == 0 and cloud is not None else _cloud_client(profile, entry, first=i == 0)
                )
                models[entry.name] = _serve(
                    profile, entry, path, client, all_lookups, [*observers], observers_for, use_lookups
                )
        except BaseException:
            for served in models.values():
                served.task.close()
            for parts_of_model in all_lookups.values():
                parts_of_model.close()
            raise
        log.info("agent %s ready in %.0f ms", profile.device_id, (time.perf_counter() - started) * 1000)
        return cls(profile, models, all_lookups, next(iter(models)))

    # -- the repository -----------------------------------------------------------------------
    def get(self, name: str | None = None) -> ServedModel:
        """The named model (default: the first); NotFoundError naming the served ones."""
        found = self.models.get(name or self.default_name)
        if found is None:
            raise NotFoundError(f"unknown model {name!r}; this agent serves {sorted(self.models)}")
        return found

    @property
    def lookups(self) -> LookupParts | None:
        """The first classifier's table and cache (the one deferral uses), if it has them."""
        return next(iter(self.model_lookups.values()), None)

    @property
    def classifier(self) -> ClassificationTask | None:
        """The first classification model's task (the one deferral and the camera use)."""
        for served in self.models.values():
            if isinstance(served.task, ClassificationTask):
                return served.task
        return None

    @property
    def cascade(self) -> Cascade:
        task = self.classifier
        if task is None:
            raise ModelError("this agent serves no classification model")
        return task.cascade

    @property
    def model(self) -> LocalModel:
        """The default model as loaded now."""
        return self.get().slot.current

    # -- answering ----------------------------------------------------------------------------
    def predict(
        self, features: np.ndarray, *, request_id: str | None = None, key: str | None = None
    ) -> Answer:
        """One encoded feature row -> an answer with provenance (the first classifier)."""
        return self.cascade.answer(CascadeRequest(features, request_id=request_id, key=key))

    def predict_file(self, path: Path) -> Answer:
        data = read_input_bytes(path, int(self.profile.api.max_body_mb * (1 << 20)))
        features = encode_input_bytes(path, data, _features(self.cascade.slot.current))
        raw = data if self.cascade.send_raw_input else None
        return self.cascade.answer(CascadeRequest(features, request_id=path.name, raw=raw))

    def infer(self, name: str | None, request: TaskRequest, wanted: list[str] | None = None) -> TaskReply:
        """Any model, any task: inputs by name in, outputs by name and provenance out."""
        task = self.get(name).task
        if isinstance(task, ClassificationTask):
            return task.infer(request, wanted)
        reply = task.infer(request)
        return reply if wanted is None else _select(reply, wanted, task)

    def counters(self) -> dict[str, float]:
        """Counters of the agent's parts, for metrics and telemetry: every model's as
        `model_<name>_<counter>` (its task's, budget, agreement, adaptive threshold, table and
        cache), and the first classifier's also unprefixed, as before counters were per model."""
        out: dict[str, float] = {}
        first = self.classifier
        for served in self.models.values():
            own = dict(served.task.counters())
            lookups = self.model_lookups.get(served.name)
            if lookups is not None:
                own.update(lookups.stats())
            if served.task is first:
                out.update(own)
            out.update({f"model_{served.name}_{k}": v for k, v in own.items()})
        return out

    def close(self) -> None:
        for served in self.models.values():
            served.task.close()
        for lookups in self.model_lookups.values():
            lookups.close()


def _cloud_client(profile: DeviceProfile, entry: ModelEntry, *, first: bool) -> CloudClient:
    """The first model escalates to [cloud] model unless its entry names another; the others
    escalate only to a cloud model their entry names."""
    if first or entry.cloud_model:
        return build_cloud_client(profile, entry.cloud_model or profile.cloud.model)
    return NullCloudClient()


def _serve(
    profile: DeviceProfile,
    entry: ModelEntry,
    path: Path,
    client: CloudClient,
    all_lookups: dict[str, LookupParts],
    observers: list[AnswerObserver],
    observers_for: ObserversFor,
    use_lookups: bool,
) -> ServedModel:
    """One model loaded, with its task, budget, observers and (a classifier with `lookups` on)
    its own lookup table and answer cache, recorded in `all_lookups` so a failure closes them."""
    model = LocalModel.load(path, backend_options(profile), entry.backend)
    section = entry.cascade or profile.cascade
    slot = ModelSlot(model)
    lookups: LookupParts | None = None
    if model.card.task == "classification" and use_lookups and entry.lookups:
        lookups = all_lookups[entry.name] = build_lookups(profile, entry)
    wiring = ModelWiring(entry, model.card.task, slot, client, lookups)
    parts = TaskParts(
        slot,
        entry,
        client,
        EscalationBudget(section.max_escalation_fraction, section.max_escalations_per_minute),
        send_raw_input=profile.cloud.send_raw_input,
        observers=[*observers, *observers_for(wiring)],
        max_image_pixels=profile.api.max_image_pixels,
    )
    if lookups is not None:
        parts.lookups = [lookups.table]
        parts.hard_lookups = [lookups.cache] if lookups.cache else []
        parts.cloud_sinks = lookups.sinks
    try:
        task = build_task(model.card.task, parts, section)
    except BaseException:
        model.close()
        raise
    log.info("serving %s (%s, %s)", entry.name, model.card.task, path)
    return ServedModel(entry, task)


def _features(model: LocalModel) -> FeatureSpec:
    if model.card.features is None:
        raise ModelError(f"model {model.card.name!r} has no schema-1 feature encoding; use Agent.infer")
    return model.card.features


def _select(reply: TaskReply, wanted: list[str], task: Task) -> TaskReply:
    unknown = [n for n in wanted if n not in reply.outputs]
    if unknown:
        available = [o.name for o in task.output_info()]
        raise ProtocolError(f"unknown output(s) {unknown}; available: {available}", field="outputs")
    return TaskReply({n: reply.outputs[n] for n in wanted}, reply.provenance, reply.model_version)
