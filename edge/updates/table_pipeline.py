"""Apply one verified table manifest: download (full or delta) -> verify -> test with the real
table validation -> install -> swap with TableLookup.replace -> point `active` at it. No MQTT or
HTTP here: transports come in through the ArtifactTransport interface."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from edgecascade.edge.lookup.table_lookup import TableLookup
from edgecascade.edge.updates.download import Report, fetch_verified
from edgecascade.edge.updates.store import Installed
from edgecascade.edge.updates.table_store import TableStore
from edgecascade.edge.updates.transports import ArtifactTransport
from edgecascade.shared.errors import StorageError, UpdateError
from edgecascade.shared.lookup import TableFile
from edgecascade.shared.table_manifest import TableManifest

log = logging.getLogger(__name__)


class TablePipeline:
    """`current` is the table serving now (delivered or factory; None = no table), `previous`
    the one kept for a rollback push (no download needed to go back)."""

    def __init__(
        self,
        lookup: TableLookup,
        store: TableStore,
        transport_for: Callable[[str], ArtifactTransport],
        *,
        max_bytes: int,
    ) -> None:
        self.lookup = lookup
        self.store = store
        self.transport_for = transport_for
        self.max_bytes = max_bytes
        serving = lookup.table
        self.current = Installed(serving.meta.version, serving.path) if serving is not None else None
        self.previous: Installed | None = None
        found = store.read_pointer()
        if found and self.current is not None and found[0].path == self.current.path:
            self.previous = found[1]
        self.bytes_downloaded = 0  # on the wire, for the delta-vs-full comparison

    def is_current(self, manifest: TableManifest) -> bool:
        cur = self.current
        return cur is not None and cur.version == manifest.version and cur.path.name == manifest.file_name

    def apply(self, manifest: TableManifest, stop: threading.Event, report: Report) -> bool:
        """Bring `manifest`'s table into service. Returns False if stopped early (a newer
        manifest); raises UpdateError with the reason on refusal, the current table serving on."""
        installed = self.store.installed(manifest)
        if installed is None:
            path, received = fetch_verified(
                manifest.artifact,
                manifest.delta,
                self.current,
                staging=self.store,
                transport=self.transport_for(manifest.route),
                stop=stop,
                report=report,
                max_bytes=self.max_bytes,
            )
            self.bytes_downloaded += received
            if path is None:
                return False
            installed = self.store.install(manifest, path)
        report("testing")
        try:
            self._test(installed, manifest)
            # replace() validates once more and swaps atomically; a refusal keeps the old table.
            self.lookup.replace(installed.path)
        except (StorageError, UpdateError) as exc:
            if installed.path.parent.name not in self._kept():
                self.store.remove(installed)
            raise exc if isinstance(exc, UpdateError) else UpdateError(str(exc)) from exc
        # Pointer after the swap: a crash before it restarts on the old table and re-applies.
        previous, self.current, self.previous = self.current, installed, self.current
        try:
            self.store.set_active(installed, previous)
        except OSError as exc:  # a full disk: the new table serves now, the old after a restart
            log.error("table %s serves, but its pointer cannot be written (%s)", installed.version, exc)
            return True
        self.store.prune(self._kept())
        return True

    def _kept(self) -> set[str]:
        return {
            p.path.parent.name
            for p in (self.current, self.previous)
            if p is not None and p.path.parent.parent == self.store.root
        }

    def _test(self, installed: Installed, manifest: TableManifest) -> None:
        """Open with the device's own validation (header, CRC, encoding version), then check the
        header says what the signed manifest says."""
        table = TableFile.open(installed.path, encoding_version=self.lookup.encoding_version)
        try:
            meta = table.meta
            header = (meta.name, meta.version, meta.cloud_model, meta.cloud_model_version, meta.key_scheme)
            signed = (
                manifest.name,
                manifest.version,
                manifest.cloud_model,
                manifest.cloud_model_version,
                manifest.key_scheme,
            )
            if header != signed:
                raise UpdateError(f"table header {header} does not match the signed manifest {signed}")
        finally:
            table.close()
