"""Apply one verified manifest: download (full or delta) -> verify -> test in a child -> load ->
swap -> point `active` at it; and roll back to the kept previous version. No MQTT or HTTP here:
transports come in through the ArtifactTransport interface."""

from __future__ import annotations

import logging
import shutil
import threading
from collections.abc import Callable
from pathlib import Path

from edgecascade.edge.config.profile import DeviceProfile
from edgecascade.edge.local_model import LocalModel, backend_options
from edgecascade.edge.model_slot import ModelSlot
from edgecascade.edge.updates.candidate_check import check_in_child
from edgecascade.edge.updates.download import fetch_verified
from edgecascade.edge.updates.store import Installed, UpdateStore
from edgecascade.edge.updates.transports import ArtifactTransport
from edgecascade.shared.errors import EdgecascadeError, UpdateError
from edgecascade.shared.manifest import Manifest

log = logging.getLogger(__name__)

#: report(state, fields): the updater turns these into the retained status message.
Report = Callable[..., None]


class UpdatePipeline:
    def __init__(
        self,
        profile: DeviceProfile,
        slot: ModelSlot,
        store: UpdateStore,
        current: Installed,
        transport_for: Callable[[str], ArtifactTransport],
        on_swap: Callable[[Manifest], None] | None = None,
        backend: str | None = None,
    ) -> None:
        self.profile = profile
        #: The profile's backend override for this model's factory artifact (rolling back to it).
        self.backend = backend
        self.slot = slot
        self.store = store
        self.current = current
        self.previous: Installed | None = None
        found = store.read_pointer()
        if found and found[0].path == current.path:
            self.previous = found[1]
        self.transport_for = transport_for
        #: Called right after a manifest's model starts serving (the health window opens there,
        #: before any bookkeeping, so it sees the new model's first answers).
        self.on_swap = on_swap
        self.bytes_downloaded = 0  # on the wire, for the delta-vs-full comparison

    def is_current(self, manifest: Manifest) -> bool:
        return self.current.version == manifest.version and self.current.path.name == manifest.file_name

    def apply(self, manifest: Manifest, stop: threading.Event, report: Report) -> bool:
        """Bring `manifest`'s model into service. Returns False if stopped early (a newer manifest);
        raises UpdateError with the reason on refusal, leaving the current model serving."""
        installed = self.store.installed(manifest)
        if installed is None:
            artifact = self._download(manifest, stop, report)
            if artifact is None:
                return False
            installed = self.store.install(manifest, artifact)
        report("testing")
        try:
            check_in_child(
                installed.path, installed.path.parent / "manifest.json", self.profile.updates.check_timeout_s
            )
            model = LocalModel.load(installed.path, backend_options(self.profile), manifest.backend)
        except (UpdateError, EdgecascadeError) as exc:
            if installed.path.parent.name not in self._kept():
                shutil.rmtree(installed.path.parent, ignore_errors=True)
            raise exc if isinstance(exc, UpdateError) else UpdateError(str(exc)) from exc
        self._swap_to(installed, model, previous=self.current)
        if self.on_swap is not None:
            self.on_swap(manifest)
        return True

    def rollback(self) -> Installed:
        """Serve the kept previous version again (instant: it is on disk). Raises UpdateError."""
        if self.previous is None:
            raise UpdateError("no previous version kept to roll back to")
        target = self.previous
        damage = self.store.damage(target)
        if damage is not None:  # a bad disk since it served: loading it could serve wrong weights
            raise UpdateError(f"rollback failed: kept version {target.version} is damaged ({damage})")
        stored = self.store.manifest_of(target)
        backend = stored.backend if stored is not None else self.backend
        try:
            model = LocalModel.load(target.path, backend_options(self.profile), backend)
        except EdgecascadeError as exc:
            raise UpdateError(f"rollback failed: {exc}") from exc
        self._swap_to(target, model, previous=None)
        return target

    # -- steps ------------------------------------------------------------------------------
    def _kept(self) -> set[str]:
        return {p.path.parent.name for p in (self.current, self.previous) if p is not None}

    def _swap_to(self, new: Installed, model: LocalModel, previous: Installed | None) -> None:
        # Pointer first: a crash after it serves the new (tested) model, before it the old one.
        try:
            self.store.set_active(new, previous)
        except OSError:
            model.close()  # not swapped in: the old model serves on
            raise
        self.slot.swap(model)
        self.current, self.previous = new, previous
        keep = {p.path.parent.name for p in (new, previous) if p is not None and self._in_store(p)}
        self.store.prune(keep)

    def _in_store(self, installed: Installed) -> bool:
        return installed.path.parent.parent == self.store.versions

    def _download(self, manifest: Manifest, stop: threading.Event, report: Report) -> Path | None:
        path, received = fetch_verified(
            manifest.artifact,
            manifest.delta,
            self.current,
            staging=self.store,
            transport=self.transport_for(manifest.route),
            stop=stop,
            report=report,
            max_bytes=int(self.profile.updates.max_artifact_mb * 1024 * 1024),
        )
        self.bytes_downloaded += received
        return path
