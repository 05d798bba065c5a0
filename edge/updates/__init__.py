"""Model updates on the device: signed manifests, resumable delivery, test-then-swap, rollback.

For the daemon:
    health = edge.updates.health_monitor(profile)      # cascade observer: health.observe
    service = edge.updates.build(profile, connection, slot, health=health, cascade=cascade)
    path = edge.updates.active_model_path(profile)     # what to load at start-up
    tables = edge.updates.build_table_updater(profile, connection, lookups.table, model=name)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from edgecascade.edge.updates.health_watch import ErrorRateWatch, HealthMonitor, HealthWatch
from edgecascade.edge.updates.store import active_model, active_model_path

if TYPE_CHECKING:
    from edgecascade.edge.cascade import Cascade
    from edgecascade.edge.config.profile import DeviceProfile
    from edgecascade.edge.lookup.table_lookup import TableLookup
    from edgecascade.edge.model_slot import ModelSlot
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
    "build_table_updater",
    "health_monitor",
]


def health_monitor(profile: DeviceProfile) -> HealthMonitor:
    """The post-swap health watches: error rate (profile limits), then escalation rate, confidence,
    latency and disagreement against the previous model (manifest limits)."""
    from edgecascade.edge.updates.ml_health_watches import ml_watches

    cfg = profile.updates
    # ML-aware watches judge only when the manifest carries `health` limits.
    return HealthMonitor([ErrorRateWatch(cfg.max_error_rate, cfg.min_requests), *ml_watches()])


def build(
    profile: DeviceProfile,
    connection: MqttConnection,
    slot: ModelSlot,
    *,
    health: HealthMonitor | None = None,
    cascade: Cascade | None = None,
) -> ModelUpdater:
    """The updater Service for the daemon. `slot` must hold the model at active_model_path(profile).
    With `cascade`, each model that starts serving brings its manifest's escalation thresholds
    (the profile's [cascade] policy for a model without any), applied from `start()` on."""
    from edgecascade.edge.updates.thresholds import ThresholdApplier
    from edgecascade.edge.updates.updater import ModelUpdater

    updater = ModelUpdater(profile, connection, slot, health=health)
    if cascade is not None:
        updater.on_activated.append(ThresholdApplier(cascade, profile.cascade).apply)
    return updater


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
