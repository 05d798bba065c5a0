"""Model updates on the device: signed manifests, resumable delivery, test-then-swap, rollback,
each served model on its own (its topics, store, status, health watch).

For the daemon:
    path = edge.updates.active_model_path(profile, entry)  # what to load at start-up, per model
    services = edge.updates.build_model_updaters(profile, connection, agent_tasks)
    tables = edge.updates.build_table_updater(profile, connection, lookups.table, model=name)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from edgecascade.edge.updates.health_watch import ErrorRateWatch, HealthMonitor, HealthWatch
from edgecascade.edge.updates.store import active_model, active_model_path

if TYPE_CHECKING:
    from edgecascade.edge.cascade import Cascade
    from edgecascade.edge.config.models import ModelEntry
    from edgecascade.edge.config.profile import DeviceProfile
    from edgecascade.edge.lookup.table_lookup import TableLookup
    from edgecascade.edge.model_slot import ModelSlot
    from edgecascade.edge.tasks.base import Task
    from edgecascade.edge.updates.table_updater import TableUpdater
    from edgecascade.edge.updates.updater import ModelUpdater
    from edgecascade.shared.mqtt import MqttConnection

__all__ = [
    "ErrorRateWatch",
    "HealthMonitor",
    "HealthWatch",
    "active_model",
    "active_model_path",
    "build",
    "build_model_updaters",
    "build_table_updater",
    "health_monitor",
]


def health_monitor(
    profile: DeviceProfile, entry: ModelEntry | None = None, task: str = "classification"
) -> HealthMonitor:
    """The post-swap health watches of one model (`entry`, default: the first): error rate
    (its `health` limits, else [updates]), then the ML-aware watches of its task (manifest
    limits): escalation rate, confidence, latency and disagreement for a classifier, the
    latency of its model calls for the other tasks."""
    from edgecascade.edge.updates.ml_health_watches import ml_watches

    cfg = profile.updates
    own = (entry or profile.model_entries()[0]).health
    max_rate = cfg.max_error_rate if own.max_error_rate is None else own.max_error_rate
    min_requests = cfg.min_requests if own.min_requests is None else own.min_requests
    # ML-aware watches judge only when the manifest carries `health` limits.
    return HealthMonitor([ErrorRateWatch(max_rate, min_requests), *ml_watches(task)])


def build(
    profile: DeviceProfile,
    connection: MqttConnection,
    slot: ModelSlot,
    *,
    model: str | None = None,
    health: HealthMonitor | None = None,
    cascade: Cascade | None = None,
) -> ModelUpdater:
    """The updater Service of one served model (`model`, default: the first). `slot` must hold
    the model at active_model_path(profile, its entry); `health` must be fed by that model only.
    With `cascade` (a classifier's), each model that starts serving brings its manifest's
    escalation thresholds (the model's [cascade] policy for a model without any), applied from
    `start()` on."""
    from edgecascade.edge.updates.thresholds import ThresholdApplier
    from edgecascade.edge.updates.updater import ModelUpdater

    updater = ModelUpdater(profile, connection, slot, model=model, health=health)
    if cascade is not None:
        section = updater.entry.cascade or profile.cascade
        updater.on_activated.append(ThresholdApplier(cascade, section).apply)
    return updater


def build_model_updaters(
    profile: DeviceProfile,
    connection: MqttConnection,
    tasks: Iterable[Task],
    health: Mapping[str, HealthMonitor] | None = None,
) -> list[ModelUpdater]:
    """One updater per served model (the agent's tasks, in profile order), each with its own
    health monitor, fed only by that model: its slot's calls, and a classifier's answers.
    `health`: the monitors the daemon wired while the agent was built, by model name; without
    it, each is made here and hooked to its model (an agent built without them, e.g. tests).
    Thresholds from a manifest apply to that classifier's cascade only."""
    from edgecascade.edge.tasks.classification import ClassificationTask

    found = []
    for task in tasks:
        entry = task.parts.entry
        cascade = task.cascade if isinstance(task, ClassificationTask) else None
        monitor = health.get(entry.name) if health is not None else None
        if monitor is None:
            monitor = health_monitor(profile, entry, task.kind)
            task.slot.observers.append(monitor.observe_run)
            if cascade is not None:
                cascade.observers.append(monitor.observe)
        found.append(build(profile, connection, task.slot, model=entry.name, health=monitor, cascade=cascade))
    return found


def build_table_updater(
    profile: DeviceProfile, connection: MqttConnection, lookup: TableLookup, *, model: str | None = None
) -> TableUpdater | None:
    """Model `model`'s lookup-table updater Service (None when [updates] tables is off).
    `lookup` is that model's TableLookup (agent.model_lookups[model].table); its delivered
    tables swap into it."""
    from edgecascade.edge.updates.table_updater import TableUpdater

    if not profile.updates.tables:
        return None
    return TableUpdater(profile, connection, lookup, model=model)
