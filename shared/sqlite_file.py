"""The one way edgecascade opens a SQLite file (the device's telemetry buffer, deferred-case
store and answer cache, and the ingester's store): WAL mode, a chosen `synchronous` level,
and a database that fails its check at start-up (a power cut, a bad disk) moved aside and
rebuilt, never a crash loop."""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from edgecascade.shared.errors import StorageError

log = logging.getLogger(__name__)

_SIDECARS = ("", "-wal", "-shm")


Synchronous = Literal["full", "normal"]


def open_checked(
    path: Path,
    init: Callable[[sqlite3.Connection], object],
    *,
    synchronous: Synchronous = "normal",
    on_rebuilt: Callable[[sqlite3.Connection], None] | None = None,
) -> sqlite3.Connection:
    """Open `path` in WAL mode, check it (`PRAGMA quick_check`) and run `init` (create the schema).
    A database that fails is renamed to `<name>.corrupt-<UTC time>` (with its -wal/-shm files),
    logged at WARNING, and a fresh one is created, on which `on_rebuilt` then runs (a store
    whose keys must never repeat moves them past the lost file's here). Raises StorageError if
    that fails too.

    `synchronous`: "full" = a commit survives a power cut; "normal" (in WAL mode) = it survives
    a process crash, and a power cut may roll back the last commits, never corrupt the file."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StorageError(f"cannot create folder for database {path}: {exc.strerror}") from exc
    try:
        return _open(path, init, synchronous)
    except sqlite3.OperationalError as exc:
        # Locked by another process, unreadable, I/O error: not proof of corruption, keep the file.
        raise StorageError(f"cannot open database {path}: {exc}") from exc
    except sqlite3.DatabaseError as exc:  # not a database, malformed, failed quick_check
        aside = _move_aside(path)
        log.warning("database %s is corrupt (%s); moved it to %s and started a new one", path, exc, aside)
    try:
        conn = _open(path, init, synchronous)
        if on_rebuilt is not None:
            on_rebuilt(conn)
        return conn
    except sqlite3.Error as exc:
        raise StorageError(f"cannot create database {path}: {exc}") from exc


def _open(
    path: Path, init: Callable[[sqlite3.Connection], object], synchronous: Synchronous
) -> sqlite3.Connection:
    conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={'FULL' if synchronous == 'full' else 'NORMAL'}")
        result = conn.execute("PRAGMA quick_check").fetchone()
        if result is None or result[0] != "ok":
            raise sqlite3.DatabaseError(f"quick_check: {result[0] if result else 'no result'}")
        init(conn)
    except sqlite3.Error:
        conn.close()
        raise
    return conn


def _move_aside(path: Path) -> Path:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    for suffix in _SIDECARS:
        src = path.with_name(path.name + suffix)
        if src.exists():
            try:
                src.rename(target.with_name(target.name + suffix))
            except OSError as exc:
                raise StorageError(f"cannot move corrupt database {src} aside: {exc.strerror}") from exc
    return target
