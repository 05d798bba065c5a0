"""The device's updater of one served model: a ManifestSubscriber (see subscriber.py) for that
model's manifests, on that model's own topics, with its own store and status.

On top of what every subscriber does, it tells `on_activated` callbacks which manifest's model
serves (its thresholds apply), watches the model's health after a swap and rolls it back on
trouble. A device runs one per served model (edge.updates.build_model_updaters)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from pydantic import BaseModel

from edgecascade.edge.config.models import ModelEntry
from edgecascade.edge.config.profile import DeviceProfile
from edgecascade.edge.model_slot import ModelSlot
from edgecascade.edge.updates.health_watch import HealthMonitor
from edgecascade.edge.updates.pipeline import UpdatePipeline
from edgecascade.edge.updates.selection import ManifestBook, check_manifest, check_model_name
from edgecascade.edge.updates.store import Installed, UpdateStore, active_model, model_store
from edgecascade.edge.updates.subscriber import ManifestSubscriber, profile_public_key_text
from edgecascade.shared.errors import ConfigError, EdgecascadeError, UpdateError
from edgecascade.shared.manifest import Manifest, UpdateState, UpdateStatus
from edgecascade.shared.mqtt import MqttConnection
from edgecascade.shared.version import __version__

log = logging.getLogger(__name__)

__all__ = ["ModelUpdater", "model_entry", "profile_public_key_text"]


def model_entry(profile: DeviceProfile, name: str | None) -> ModelEntry:
    """The profile's entry named `name` (default: the first); ConfigError naming the served ones."""
    entries = profile.model_entries()
    if name is None:
        return entries[0]
    found = next((e for e in entries if e.name == name), None)
    if found is None:
        raise ConfigError(
            f"no served model {name!r}; the profile serves {[e.name for e in entries]}", key="models"
        )
    return found


class ModelUpdater(ManifestSubscriber[Manifest]):
    """Service `model-updater-<model>` for the served model `model` (default: the first), whose
    `slot` it swaps. `health` (optional) is fed by that model only; `on_activated` callbacks
    get each manifest whose model starts serving (e.g. to apply its thresholds)."""

    kind = "model"
    store: UpdateStore
    pipeline: UpdatePipeline

    def __init__(
        self,
        profile: DeviceProfile,
        connection: MqttConnection,
        slot: ModelSlot,
        *,
        model: str | None = None,
        health: HealthMonitor | None = None,
        current: Installed | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(profile, connection, clock)
        self.entry = model_entry(profile, model)
        self.model = self.entry.name
        self.name = f"model-updater-{self.model}"
        self.health = health
        device, name = profile.device_id, self.model
        store = model_store(profile, name)
        self._attach(
            ManifestBook(
                self.topics.manifest_device(name, device),
                [self.topics.manifest_group(name, g) for g in profile.groups],
                self.topics.manifest_all(name),
            ),
            store,
            UpdatePipeline(
                profile,
                slot,
                store,
                current or active_model(profile, self.entry),
                self.transports,
                on_swap=self._open_window,
                backend=self.entry.backend,
            ),
            self.topics.update_status(device, name),
        )
        #: Called with the manifest of each model that starts serving (None: the factory model),
        #: at start() for the model serving then, after every swap and every rollback.
        self.on_activated: list[Callable[[Manifest | None], None]] = []
        self.status = self._make_status("active")

    def start(self) -> None:
        if self.model == self.profile.model_entries()[0].name:
            # An older agent's one retained status would linger beside the per-model ones.
            self.connection.on_connect_hooks.append(self._clear_legacy_status)
            if self.connection.connected.is_set():
                self._clear_legacy_status()
        super().start()

    def _clear_legacy_status(self) -> None:
        self.connection.publish(self.topics.legacy_update_status(self.profile.device_id), b"", retain=True)

    # -- the model kind -----------------------------------------------------------------------
    def _starting(self) -> None:
        self._activated(self.store.manifest_of(self.pipeline.current))

    def _parse(self, payload: bytes) -> Manifest:
        return Manifest.parse(payload)

    def _addressed(self, manifest: Manifest) -> None:
        check_model_name(manifest, self.model, [e.name for e in self.profile.model_entries()])

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
            model=self.model,
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
