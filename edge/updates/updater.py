"""The device's model updater: a ManifestSubscriber (see subscriber.py) for model manifests.

On top of what every subscriber does, it tells `on_activated` callbacks which manifest's model
serves (its thresholds apply), watches health after a swap and rolls back on trouble."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from pydantic import BaseModel

from edgecascade.edge.config.profile import DeviceProfile
from edgecascade.edge.model_slot import ModelSlot
from edgecascade.edge.updates.health_watch import HealthMonitor
from edgecascade.edge.updates.pipeline import UpdatePipeline
from edgecascade.edge.updates.selection import ManifestBook, check_manifest
from edgecascade.edge.updates.store import Installed, UpdateStore, active_model, models_root
from edgecascade.edge.updates.subscriber import ManifestSubscriber, profile_public_key_text
from edgecascade.shared.errors import EdgecascadeError, UpdateError
from edgecascade.shared.manifest import Manifest, UpdateState, UpdateStatus
from edgecascade.shared.mqtt import MqttConnection
from edgecascade.shared.version import __version__

log = logging.getLogger(__name__)

__all__ = ["ModelUpdater", "profile_public_key_text"]


class ModelUpdater(ManifestSubscriber[Manifest]):
    """Service `model-updater`. `health` (optional) is fed by the cascade; `on_activated`
    callbacks get each manifest whose model starts serving (e.g. to apply its thresholds)."""

    name = "model-updater"
    kind = "model"
    store: UpdateStore
    pipeline: UpdatePipeline

    def __init__(
        self,
        profile: DeviceProfile,
        connection: MqttConnection,
        slot: ModelSlot,
        *,
        health: HealthMonitor | None = None,
        current: Installed | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(profile, connection, clock)
        self.health = health
        device = profile.device_id
        store = UpdateStore(models_root(profile))
        self._attach(
            ManifestBook(
                self.topics.manifest_device(device),
                [self.topics.manifest_group(g) for g in profile.groups],
                self.topics.manifest_all(),
            ),
            store,
            UpdatePipeline(
                profile,
                slot,
                store,
                current or active_model(profile),
                self.transports,
                on_swap=self._open_window,
            ),
            self.topics.update_status(device),
        )
        #: Called with the manifest of each model that starts serving (None: the factory model),
        #: at start() for the model serving then, after every swap and every rollback.
        self.on_activated: list[Callable[[Manifest | None], None]] = []
        self.status = self._make_status("active")

    # -- the model kind -----------------------------------------------------------------------
    def _starting(self) -> None:
        self._activated(self.store.manifest_of(self.pipeline.current))

    def _parse(self, payload: bytes) -> Manifest:
        return Manifest.parse(payload)

    def _check(self, manifest: Manifest) -> None:
        check_manifest(manifest, self.profile, __version__, self.max_bytes)

    def _serving_version(self) -> str | None:
        return self.pipeline.current.version

    def _make_status(self, state: UpdateState, **fields: object) -> BaseModel:
        return UpdateStatus(
            device=self.profile.device_id,
            profile=self.profile.profile,
            groups=list(self.profile.groups),
            agent_version=__version__,
            model=self.profile.model.name,
            active_version=self.pipeline.current.version,
            state=state,
            updated_at=self.clock(),
            health=self.health.figures() if self.health is not None else {},
            **fields,
        )

    def _serving(self, manifest: Manifest) -> None:
        # Thresholds first: when the fleet sees this state, the model serves with its own policy.
        self._activated(manifest)
        super()._serving(manifest)
        self._watch(manifest)

    def _activated(self, manifest: Manifest | None) -> None:
        for callback in self.on_activated:
            try:
                callback(manifest)
            except EdgecascadeError as exc:  # e.g. thresholds that do not fit: keep serving
                log.error("on_activated %r failed for %s: %s", callback, manifest and manifest.version, exc)

    def _watching(self) -> bool:
        return (
            self.health is not None
            and self.profile.updates.watch_window_s > 0
            and self.pipeline.previous is not None
        )

    def _open_window(self, manifest: Manifest) -> None:
        """At the swap: the new model's answers from its first one on count in its window."""
        if self.health is not None and self._watching():
            self.health.begin(manifest)

    def _watch(self, manifest: Manifest) -> None:
        window = self.profile.updates.watch_window_s
        if self.health is None or not self._watching():
            return
        deadline = time.monotonic() + window
        while time.monotonic() < deadline and not self._stopping.is_set():
            if self._wake.wait(0.1):
                return  # a new manifest arrived: it decides what serves next
            reason = self.health.verdict()
            if reason is None:
                continue
            try:
                back = self.pipeline.rollback()
            except UpdateError as exc:
                self._report("failed", reason=f"{reason}; {exc.reason}")
                return
            self._finish(manifest, "rolled_back")
            self._activated(self.store.manifest_of(back))
            log.error("rolled back %s to %s: %s", manifest.version, back.version, reason)
            self._report("rolled_back", reason=f"{reason}; back to {back.version}")
            return
        if not self._stopping.is_set():
            self._report("active")  # the window passed: publish the new model's health figures
