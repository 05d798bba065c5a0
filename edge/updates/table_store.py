"""The on-device store of one model's delivered lookup tables (its `tables` folder, see
edge/lookup `lookup_paths`: <data_dir>/tables/ for the default model), crash-safe like
the model store (edge/updates/store.py, same atomic techniques):

    .staging/<sha256>.part      a table file being downloaded (resumable)
    <version>/                  a complete, verified table: the file and manifest.json
    active                      JSON pointer {"current": {...}, "previous": {...}}
    outcomes.json               pushes already applied or refused (not retried after a restart)

No MQTT here: `delivered_table(root)` is what start-up (edge.lookup.build) reads."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from edgecascade.edge.updates.store import Installed, VersionStore, sha256_file

if TYPE_CHECKING:
    from edgecascade.shared.table_manifest import TableManifest

log = logging.getLogger(__name__)

POINTER = "active"


class TableStore(VersionStore):
    """The table store: <version>/ folders directly under the root, each with manifest.json."""

    def __init__(self, root: Path) -> None:
        super().__init__(root, versions=root, staging=root / ".staging", what="table")

    def installed(self, manifest: TableManifest) -> Installed | None:
        """The version directory for this manifest if it holds the same file (by hash)."""
        path = self.root / manifest.version / manifest.file_name
        if path.is_file() and sha256_file(path) == manifest.artifact.sha256:
            return Installed(manifest.version, path)
        return None

    def install(self, manifest: TableManifest, staged: Path) -> Installed:
        """Move a verified table into <version>/ with its manifest, atomically (temp dir + rename)."""
        return self._install(
            manifest.version,
            manifest.file_name,
            staged,
            {"manifest.json": manifest.model_dump_json().encode()},
        )

    def remove(self, installed: Installed) -> None:
        if installed.path.parent.parent == self.root:
            shutil.rmtree(installed.path.parent, ignore_errors=True)


def delivered_table(root: Path) -> tuple[Installed, Installed | None] | None:
    """The delivered table (current, previous) the store at `root` points at, or None (no
    delivery yet, or the pointer is unusable: logged). Creates nothing, except where it repairs
    a damaged pointer (see VersionStore.read_pointer)."""
    if not (root / POINTER).exists():
        return None
    try:
        return TableStore(root).read_pointer()
    except OSError as exc:
        log.error("table store %s is unusable (%s); using the factory table", root, exc)
        return None
