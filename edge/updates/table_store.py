"""The on-device store of delivered lookup tables under `<data_dir>/tables/`, crash-safe like
the model store (edge/updates/store.py, same atomic techniques):

    .staging/<sha256>.part      a table file being downloaded (resumable)
    <version>/                  a complete, verified table: the file and manifest.json
    active                      JSON pointer {"current": {...}, "previous": {...}}
    outcomes.json               pushes already applied or refused (not retried after a restart)

No MQTT here: `delivered_table(profile)` is what start-up (edge.lookup.build) reads."""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

from edge.config.profile import DeviceProfile
from edge.updates.store import Installed, atomic_write, fsync_dir, sha256_file
from shared.table_manifest import TableManifest

log = logging.getLogger(__name__)

POINTER = "active"
OUTCOMES = "outcomes.json"


class TableStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.staging = root / ".staging"
        self.pointer = root / POINTER
        self.staging.mkdir(parents=True, exist_ok=True)

    # -- pointer ----------------------------------------------------------------------------
    def read_pointer(self) -> tuple[Installed, Installed | None] | None:
        """(current, previous), or None if there is no pointer or it names a missing file."""
        try:
            data = json.loads(self.pointer.read_text())
            current = Installed(data["current"]["version"], Path(data["current"]["path"]))
            prev = data.get("previous")
            previous = Installed(prev["version"], Path(prev["path"])) if prev else None
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError) as exc:
            log.error("table pointer %s is unreadable (%s); using the factory table", self.pointer, exc)
            return None
        if not current.path.is_file():
            log.error("table pointer names missing %s; using the factory table", current.path)
            return None
        return current, previous

    def set_active(self, current: Installed, previous: Installed | None) -> None:
        body = {"current": current.to_json(), "previous": previous.to_json() if previous else None}
        atomic_write(self.pointer, json.dumps(body).encode())

    # -- versions ---------------------------------------------------------------------------
    def installed(self, manifest: TableManifest) -> Installed | None:
        """The version directory for this manifest if it holds the same file (by hash)."""
        path = self.root / manifest.version / manifest.file_name
        if path.is_file() and sha256_file(path) == manifest.artifact.sha256:
            return Installed(manifest.version, path)
        return None

    def install(self, manifest: TableManifest, staged: Path) -> Installed:
        """Move a verified table into <version>/ with its manifest, atomically (temp dir + rename)."""
        final = self.root / manifest.version
        tmp = self.root / f".tmp-{manifest.version}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        target = tmp / manifest.file_name
        os.replace(staged, target)
        (tmp / "manifest.json").write_bytes(manifest.model_dump_json().encode())
        for path in (target, tmp / "manifest.json"):
            with open(path, "rb") as f:
                os.fsync(f.fileno())
        fsync_dir(tmp)
        if final.exists():  # a same-named version with other bytes: keep the newer push
            shutil.rmtree(final)
        os.replace(tmp, final)
        fsync_dir(self.root)
        return Installed(manifest.version, final / manifest.file_name)

    def remove(self, installed: Installed) -> None:
        if installed.path.parent.parent == self.root:
            shutil.rmtree(installed.path.parent, ignore_errors=True)

    def prune(self, keep: set[str]) -> None:
        """Delete version directories other than `keep` (current and previous)."""
        for folder in self.root.iterdir():
            if folder.is_dir() and not folder.name.startswith(".") and folder.name not in keep:
                shutil.rmtree(folder, ignore_errors=True)

    # -- outcomes ---------------------------------------------------------------------------
    def outcomes(self) -> dict[str, str]:
        try:
            data = json.loads((self.root / OUTCOMES).read_text())
        except FileNotFoundError:
            return {}
        except ValueError as exc:
            log.error("unreadable %s (%s); table pushes may be retried once", OUTCOMES, exc)
            return {}
        return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}

    def record_outcome(self, push_id: str, outcome: str) -> None:
        data = self.outcomes()
        data[push_id] = outcome
        atomic_write(self.root / OUTCOMES, json.dumps(data).encode())

    # -- staging ------------------------------------------------------------------------------
    def staging_file(self, sha256: str) -> Path:
        return self.staging / f"{sha256}.part"

    def clear_staging(self, keep: str | None = None) -> None:
        for path in self.staging.iterdir():
            if keep is None or path.name != f"{keep}.part":
                path.unlink(missing_ok=True)


def tables_root(profile: DeviceProfile) -> Path:
    return profile.data_dir / "tables"


def delivered_table(profile: DeviceProfile) -> tuple[Installed, Installed | None] | None:
    """The delivered table (current, previous) named by the pointer, or None (no delivery yet,
    or the pointer is unusable: logged). Creates nothing."""
    if not (tables_root(profile) / POINTER).exists():
        return None
    try:
        return TableStore(tables_root(profile)).read_pointer()
    except OSError as exc:
        log.error("table store %s is unusable (%s); using the factory table", tables_root(profile), exc)
        return None
