"""The on-device model stores, one per served model under `<data_dir>/models/<model name>/`,
safe against kill -9 and power loss. Each holds:

    staging/<sha256>.part       a blob being downloaded (resumable: chunks are re-checked by hash)
    versions/<version>/         a complete, verified model: artifact, card, manifest.json
    active                      JSON pointer {"current": {...}, "previous": {...}}
    active.bak                  a second copy of it, used when `active` is damaged
    outcomes.json               pushes already applied, refused or rolled back (not retried)
    instruction.json            the newest instruction finished: older manifests are replays

A version directory appears only by an atomic rename of a fully written and fsynced temporary
directory, and `active` only by write-temp + fsync + os.replace + fsync-dir, so after a crash the
device finds either the old pointer or the new one, each naming a complete model.

Damage after the fact (a bad SD card, a user's edit) never stops the device: an unreadable
state file is moved aside as `<name>.corrupt-<UTC time>` with one ERROR line; a damaged
`active` is restored from `active.bak`; and at start-up (`active_model`) the version the pointer
names is checked against its card (size, SHA-256, a valid card): a damaged one is moved aside
as `versions/.corrupt-<version>-<UTC time>`, the kept previous version (or the factory model)
serves, and the push that brought it is forgotten, so its retained manifest installs it again.

Agents before per-model updates kept one store, the first model's, directly in
`<data_dir>/models/`; `model_store` moves it to `<data_dir>/models/<its model>/` the first
time it runs, so an upgraded device keeps serving the update it had installed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from edgecascade.edge.config.models import ModelEntry
from edgecascade.edge.config.profile import DeviceProfile
from edgecascade.edge.local_model import resolve_artifact
from edgecascade.shared.atomic_file import atomic_write, fsync_dir
from edgecascade.shared.errors import ModelLoadError, StorageError

if TYPE_CHECKING:
    # Manifests are parsed when an update arrives; a device that starts up reads only pointers.
    from edgecascade.shared.manifest import Manifest

log = logging.getLogger(__name__)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class Instruction:
    """The newest signed instruction this device finished (applied, failed or rolled back):
    anything issued before it is a replay. Persisted by the store (VersionStore.instruction)."""

    issued_at: float = 0.0
    push_id: str | None = None


@dataclass(frozen=True)
class Installed:
    """A model the device can serve: `version` and the artifact `path` (card beside it)."""

    version: str
    path: Path

    def to_json(self) -> dict[str, str]:
        return {"version": self.version, "path": str(self.path)}


class VersionStore:
    """What the model and the lookup-table stores share: the crash-safe `active` pointer, the
    staging area, version folders that appear by atomic rename, and the record of pushes
    already handled. `what` ("model", "table") only words the log lines."""

    def __init__(self, root: Path, *, versions: Path, staging: Path, what: str) -> None:
        self.root = root
        self.versions = versions
        self.staging = staging
        self.pointer = root / "active"
        self.what = what
        for folder in (root, self.staging, self.versions):
            _folder(folder, what)

    # -- pointer ----------------------------------------------------------------------------
    @property
    def pointer_copy(self) -> Path:
        return self.pointer.with_name(self.pointer.name + ".bak")

    def read_pointer(self) -> tuple[Installed, Installed | None] | None:
        """(current, previous) from the pointer, or None if there is none. A damaged pointer is
        moved aside and restored from its copy (or dropped: the factory serves); one naming a
        missing file falls back to the previous version it names, if that is there."""
        try:
            current, previous = self._parse_pointer(self.pointer)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            return self._restore_pointer(f"{type(exc).__name__}: {exc}")
        if current.path.is_file():
            return current, previous
        if previous is not None and previous.path.is_file():
            log.error(
                "%s pointer %s names missing %s; serving the previous %s %s (%s) instead",
                self.what,
                self.pointer,
                current.path,
                self.what,
                previous.version,
                previous.path,
            )
            self._repoint(previous, None)
            self.forget_push_of(current)
            return previous, None
        log.error("%s pointer names missing %s; using the factory %s", self.what, current.path, self.what)
        self.forget_push_of(current)
        return None

    def _parse_pointer(self, path: Path) -> tuple[Installed, Installed | None]:
        data = json.loads(path.read_bytes())
        current = Installed(str(data["current"]["version"]), Path(data["current"]["path"]))
        prev = data.get("previous")
        previous = Installed(str(prev["version"]), Path(prev["path"])) if prev else None
        return self._here(current), self._here(previous) if previous else None

    def _restore_pointer(self, why: str) -> tuple[Installed, Installed | None] | None:
        """The pointer is damaged: set it aside, then serve what its copy names (if usable)."""
        aside = _set_aside(self.pointer)
        try:
            found = self._parse_pointer(self.pointer_copy)
        except (OSError, ValueError, KeyError, TypeError):
            found = None
        if found is None or not found[0].path.is_file():
            log.error(
                "%s pointer %s is unreadable (%s); moved it to %s, no usable copy: using the factory %s",
                self.what,
                self.pointer,
                why,
                aside,
                self.what,
            )
            return None
        self._repoint(*found)
        log.error(
            "%s pointer %s is unreadable (%s); moved it to %s and restored it from %s: serving %s",
            self.what,
            self.pointer,
            why,
            aside,
            self.pointer_copy.name,
            found[0].version,
        )
        return found

    def _here(self, installed: Installed) -> Installed:
        """A version the pointer recorded under the store's old place (the store was moved, see
        migrate_single_store): the same version folder in this store."""
        path = installed.path
        if not path.is_file() and path.parent.parent.name == self.versions.name:
            moved = self.versions / path.parent.name / path.name
            if moved.is_file():
                return Installed(installed.version, moved)
        return installed

    def set_active(self, current: Installed, previous: Installed | None) -> None:
        body = json.dumps(
            {"current": current.to_json(), "previous": previous.to_json() if previous else None}
        )
        # The pointer decides; the copy (written after it) is read only when the pointer is damaged.
        atomic_write(self.pointer, body.encode())
        atomic_write(self.pointer_copy, body.encode())

    def _repoint(self, current: Installed, previous: Installed | None) -> None:
        """set_active while recovering at start-up: a disk that takes no writes is logged, and
        the same recovery simply runs again at the next start."""
        try:
            self.set_active(current, previous)
        except OSError as exc:
            log.warning("cannot rewrite %s pointer %s (%s)", self.what, self.pointer, exc)

    def drop_pointer(self) -> None:
        """Serve the factory artifact from the next start on (pointer and copy removed)."""
        for path in (self.pointer, self.pointer_copy):
            path.unlink(missing_ok=True)
        fsync_dir(self.root)

    # -- versions ---------------------------------------------------------------------------
    def _install(self, version: str, file_name: str, artifact: Path, extra: dict[str, bytes]) -> Installed:
        """Move a verified artifact into <versions>/<version>/ with `extra` files beside it,
        atomically: a fully written and fsynced temporary folder, then one rename."""
        final = self.versions / version
        tmp = self.versions / f".tmp-{version}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        target = tmp / file_name
        os.replace(artifact, target)
        for name, data in extra.items():
            (tmp / name).write_bytes(data)
        for path in [target, *(tmp / name for name in extra)]:
            with open(path, "rb") as f:
                os.fsync(f.fileno())
        fsync_dir(tmp)
        if final.exists():  # a same-named version with other bytes: keep the newer push
            shutil.rmtree(final)
        os.replace(tmp, final)
        fsync_dir(self.versions)
        return Installed(version, final / file_name)

    def prune(self, keep: set[str]) -> None:
        """Delete version folders other than `keep` (current and previous), and what a crash or
        a damaged version left: `.tmp-*` (an install cut short), `.corrupt-*` (set aside)."""
        for folder in self.versions.iterdir():
            if not folder.is_dir() or folder.name in keep:
                continue
            if not folder.name.startswith(".") or folder.name.startswith((".tmp-", ".corrupt-")):
                shutil.rmtree(folder, ignore_errors=True)

    def set_aside_version(self, installed: Installed) -> Path:
        """Move a damaged version folder out of the way (pruned at the next swap)."""
        folder = installed.path.parent
        aside = folder.with_name(f".corrupt-{folder.name}-{_stamp()}")
        os.replace(folder, aside)
        fsync_dir(folder.parent)
        return aside

    # -- outcomes: pushes already applied, refused or rolled back are not retried after a restart --
    def outcomes(self) -> dict[str, str]:
        path = self.root / "outcomes.json"
        try:
            data = json.loads(path.read_bytes())
            if not isinstance(data, dict):
                raise TypeError(f"a JSON {type(data).__name__}, not an object")
            return {str(k): str(v) for k, v in data.items()}
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, TypeError) as exc:
            log.error(
                "unreadable %s %s (%s); moved it to %s, pushes may be retried once",
                self.what,
                path,
                exc,
                _set_aside(path),
            )
            return {}

    def record_outcome(self, push_id: str, outcome: str) -> None:
        data = self.outcomes()
        data[push_id] = outcome
        atomic_write(self.root / "outcomes.json", json.dumps(data).encode())

    def forget_push_of(self, installed: Installed) -> None:
        """Let the push that installed a now damaged or missing version apply again (its
        manifest is still retained on the broker): drop it from the outcomes. Best effort: a
        version without a readable manifest.json is left to a new push."""
        try:
            push_id = str(json.loads((installed.path.parent / "manifest.json").read_bytes())["push_id"])
            data = self.outcomes()
            if data.pop(push_id, None) is not None:
                atomic_write(self.root / "outcomes.json", json.dumps(data).encode())
        except (FileNotFoundError, NotADirectoryError):
            return  # the whole version folder is gone: nothing names its push
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("cannot forget the push of %s %s (%s)", self.what, installed.version, exc)

    # -- the newest instruction finished: what is issued before it is a replay ------------------
    def instruction(self) -> Instruction:
        path = self.root / "instruction.json"
        try:
            data = json.loads(path.read_bytes())
            return Instruction(float(data["issued_at"]), str(data["push_id"]))
        except FileNotFoundError:
            return Instruction()
        except (OSError, ValueError, KeyError, TypeError) as exc:
            # Fail closed would stop all updates; the version rule still refuses downgrades.
            log.error(
                "unreadable %s %s (%s); moved it to %s, replay check starts from zero",
                self.what,
                path,
                exc,
                _set_aside(path),
            )
            return Instruction()

    def record_instruction(self, issued_at: float, push_id: str) -> Instruction:
        """Raise the replay floor to this instruction (never lowers it). Returns the floor."""
        last = self.instruction()
        if issued_at < last.issued_at:
            return last
        atomic_write(
            self.root / "instruction.json", json.dumps({"issued_at": issued_at, "push_id": push_id}).encode()
        )
        return Instruction(issued_at, push_id)

    # -- staging ------------------------------------------------------------------------------
    def staging_file(self, sha256: str) -> Path:
        return self.staging / f"{sha256}.part"

    def clear_staging(self, keep: str | None = None) -> None:
        for path in self.staging.iterdir():
            if keep is None or path.name != f"{keep}.part":
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)


def _stamp() -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())


def _folder(path: Path, what: str) -> None:
    """Make the store folder `path`; a file in its place is set aside first (logged)."""
    if (path.exists() or path.is_symlink()) and not path.is_dir():
        log.error("%s store folder %s is not a folder; moved it to %s", what, path, _set_aside(path))
    path.mkdir(parents=True, exist_ok=True)


def _set_aside(path: Path) -> Path | str:
    """Rename a damaged state file (or a directory in its place) to `<name>.corrupt-<UTC time>`;
    returns the new path, or why it could not be moved (it is then only ignored)."""
    aside = path.with_name(f"{path.name}.corrupt-{_stamp()}")
    try:
        os.replace(path, aside)
    except OSError as exc:
        return f"nowhere ({exc.strerror})"
    return aside


#: Verdicts on stored versions in this process, by (path, size, mtime, inode): start-up asks
#: for the serving model several times, and hashes it once. None = intact.
_VERDICTS: dict[tuple[str, int, int, int], str | None] = {}


def _damage(artifact: Path) -> str | None:
    """Why `artifact` does not match the card the store wrote beside it, or None."""
    try:
        stat = artifact.stat()
    except OSError as exc:
        return str(exc)
    key = (str(artifact), stat.st_size, stat.st_mtime_ns, stat.st_ino)
    if key not in _VERDICTS:
        _VERDICTS[key] = _check_against_card(artifact, stat.st_size)
    return _VERDICTS[key]


def _check_against_card(artifact: Path, size: int) -> str | None:
    from edgecascade.shared.model_card import ModelCard

    try:
        card = ModelCard.load_for(artifact)
        if size != card.size_bytes:
            return f"{size} bytes, its card says {card.size_bytes}"
        if sha256_file(artifact) != card.sha256:
            return "its SHA-256 differs from its card's"
    except (OSError, ModelLoadError) as exc:
        return str(exc)
    return None


class UpdateStore(VersionStore):
    """The model store: versions/<version>/ holds the artifact, its card and manifest.json."""

    def __init__(self, root: Path) -> None:
        super().__init__(root, versions=root / "versions", staging=root / "staging", what="model")

    def installed(self, manifest: Manifest) -> Installed | None:
        """The version directory for this manifest if it holds the same artifact (by hash)."""
        path = self.versions / manifest.version / manifest.file_name
        if path.is_file() and sha256_file(path) == manifest.artifact.sha256:
            return Installed(manifest.version, path)
        return None

    def damage(self, installed: Installed) -> str | None:
        """Why a version in this store cannot serve (its artifact does not match its card, or
        the card is unreadable), or None. Models from outside the store are not checked here."""
        if installed.path.parent.parent != self.versions:
            return None
        return _damage(installed.path)

    def manifest_of(self, installed: Installed) -> Manifest | None:
        """The manifest a stored version came with; None for a model from outside the store
        (the factory model) or an unreadable one."""
        if installed.path.parent.parent != self.versions:
            return None
        from edgecascade.shared.manifest import Manifest

        try:
            return Manifest.model_validate_json((installed.path.parent / "manifest.json").read_bytes())
        except (OSError, ValueError) as exc:
            log.error("manifest of %s is unreadable (%s)", installed.path, exc)
            return None

    def install(self, manifest: Manifest, artifact: Path) -> Installed:
        """Move a verified artifact into versions/<version>/ with its card and manifest (atomically)."""
        return self._install(
            manifest.version,
            manifest.file_name,
            artifact,
            {
                manifest.file_name + ".card.json": manifest.card.model_dump_json(indent=2).encode(),
                "manifest.json": manifest.model_dump_json().encode(),
            },
        )


#: Marks `<data_dir>/models/` as holding one store per model (written before any store is made).
LAYOUT_MARKER = ".per-model"


def models_root(profile: DeviceProfile) -> Path:
    """The folder holding every model's store."""
    return profile.data_dir / "models"


def model_store(profile: DeviceProfile, name: str) -> UpdateStore:
    """The store of model `name`, `<data_dir>/models/<name>/` (an older agent's single store
    moved there first). Raises StorageError if the folder cannot be used."""
    migrate_single_store(profile)
    root = models_root(profile) / name
    try:
        return UpdateStore(root)
    except OSError as exc:
        raise StorageError(f"model store {root} is unusable: {exc}") from exc


def migrate_single_store(profile: DeviceProfile) -> None:
    """Move an older agent's single store (`<data_dir>/models/` itself) to the folder of the
    model it served. Only renames, each atomic, and a marker written before the last one, so a
    crash at any step leaves a state the next call finishes: the old layout, the store set aside
    in `<data_dir>/models.single-store`, or the new layout."""
    root = models_root(profile)
    aside = root.with_name("models.single-store")
    try:
        if root.exists() and not root.is_dir():
            _folder(root, "model")
        if not (root / LAYOUT_MARKER).exists():
            # The old layout: store folders and files at the top (dot files are temporaries).
            if root.is_dir() and any(not p.name.startswith(".") for p in root.iterdir()):
                os.replace(root, aside)
                fsync_dir(root.parent)
            root.mkdir(parents=True, exist_ok=True)
            atomic_write(root / LAYOUT_MARKER, b"one store per model: <model name>/\n")
        if not aside.exists():
            return
        target = root / _single_store_owner(aside, profile)
        if target.exists():
            log.error(
                "cannot move the old model store %s to %s: that folder exists; left in place", aside, target
            )
            return
        os.replace(aside, target)
        fsync_dir(root)
        store = UpdateStore(target)
        found = store.read_pointer()  # names the versions at their new place
        if found is not None:
            store.set_active(*found)
        log.info("moved the model store of %s to %s (per-model stores)", target.name, target)
    except OSError as exc:
        raise StorageError(f"model store {root} is unusable: {exc}") from exc


def _single_store_owner(folder: Path, profile: DeviceProfile) -> str:
    """The model an older agent's store belongs to: the name in the manifest of the version it
    serves, else the profile's first model (the only one older agents updated)."""
    found = UpdateStore(folder).read_pointer()
    if found is not None:
        manifest = UpdateStore(folder).manifest_of(found[0])
        if manifest is not None:
            return manifest.name
    return profile.model.name


def _entry(profile: DeviceProfile, entry: ModelEntry | None) -> ModelEntry:
    return entry if entry is not None else profile.model_entries()[0]


def factory_model(profile: DeviceProfile, entry: ModelEntry | None = None) -> Installed:
    """The model `entry` (default: the first) names in the profile, as shipped."""
    entry = _entry(profile, entry)
    path = resolve_artifact(entry.path, list(profile.runtime.backend_preference))
    from edgecascade.shared.backends.registry import backend_name_for
    from edgecascade.shared.model_card import ModelCard

    # Report the artifact's own problems (format, absence) before its card's.
    backend_name_for(path, entry.backend)
    if not path.is_file():
        raise ModelLoadError(str(path), "file not found")
    return Installed(ModelCard.load_for(path).version, path)


def active_model(profile: DeviceProfile, entry: ModelEntry | None = None) -> Installed:
    """The model to serve at start-up for `entry` (default: the first): its store's pointer,
    else the factory model. A damaged stored version never serves (see the module docstring)."""
    entry = _entry(profile, entry)
    store = model_store(profile, entry.name)
    found = store.read_pointer()
    if found is None:
        return factory_model(profile, entry)
    current, previous = found
    problem = store.damage(current)
    if problem is None:
        return current
    fallback = previous if previous is not None and previous.path.is_file() else None
    if fallback is not None and store.damage(fallback) is not None:
        fallback = None
    serving = fallback or factory_model(profile, entry)
    store.forget_push_of(current)
    try:
        done = f"moved it to {store.set_aside_version(current)}"
        if fallback is not None:
            store.set_active(fallback, None)
        else:
            store.drop_pointer()
    except OSError as exc:  # a read-only or full disk: serve the good model all the same
        done = f"could not set it aside ({exc})"
    log.error(
        "model %s: version %s in %s is damaged (%s); %s; serving %s (%s) instead until its push "
        "installs it again",
        entry.name,
        current.version,
        current.path.parent,
        problem,
        done,
        serving.version,
        serving.path,
    )
    return serving


def active_model_path(profile: DeviceProfile, entry: ModelEntry | None = None) -> Path:
    """Path of the artifact to load at start-up for `entry` (updated, rolled back or factory)."""
    return active_model(profile, entry).path
