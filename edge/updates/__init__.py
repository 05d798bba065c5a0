"""Model updates on the device: signed manifests, resumable delivery, test-then-swap, rollback.

For the daemon:
    health = edge.updates.health_monitor(profile)      # cascade observer: health.observe
    service = edge.updates.build(profile, connection, slot, health=health)
    path = edge.updates.active_model_path(profile)     # what to load at start-up
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from edge.updates.health import ErrorRateWatch, HealthMonitor, HealthWatch
from edge.updates.store import active_model, active_model_path

if TYPE_CHECKING:
    from edge.config.profile import DeviceProfile
    from edge.model_slot import ModelSlot
    from edge.updates.updater import ModelUpdater
    from shared.mqtt import MqttConnection

__all__ = [
    "ErrorRateWatch",
    "HealthMonitor",
    "HealthWatch",
    "active_model",
    "active_model_path",
    "build",
    "health_monitor",
]


def health_monitor(profile: DeviceProfile) -> HealthMonitor:
    """The post-swap health watches from the profile (error rate now; ML-aware signals later)."""
    cfg = profile.updates
    return HealthMonitor([ErrorRateWatch(cfg.max_error_rate, cfg.min_requests)])


def build(
    profile: DeviceProfile,
    connection: MqttConnection,
    slot: ModelSlot,
    *,
    health: HealthMonitor | None = None,
) -> ModelUpdater:
    """The updater Service for the daemon. `slot` must hold the model at active_model_path(profile)."""
    from edge.updates.updater import ModelUpdater

    return ModelUpdater(profile, connection, slot, health=health)
