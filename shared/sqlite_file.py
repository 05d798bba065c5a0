"""The one way edgecascade opens a SQLite file (the device's telemetry buffer, deferred-case
store and answer cache, and the ingester's store): WAL mode, a chosen `synchronous` level,
and a database that fails its check at start-up (a power cut, a bad disk, a user's edit)
moved aside and rebuilt, never a crash loop.

What is moved aside (or reported), each with one WARNING naming the file:
- a database that fails `PRAGMA quick_check`, is not a database, holds another database's
  tables, is a directory, or that this user may not read and write: the whole file (with its
  -wal/-shm) becomes `<name>.corrupt-<UTC>`;
- a write-ahead log that does not fit the database (another database's, or damaged): only the
  -wal/-shm, when the database without them is intact, so the commits in the file are kept;
- a rollback journal beside a database in WAL mode (these databases never write one, so it
  is another database's, and SQLite would otherwise copy its pages into this file);
- an empty (0-byte) file without a -wal, which SQLite silently takes for a new database: kept,
  reported, and treated as rebuilt.
SQLite applies a -wal or a hot -journal without checking that it belongs to the database, so
a stale one would silently replace this file's tables (the records in it lost, no error)."""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from edgecascade.shared.errors import StorageError

log = logging.getLogger(__name__)

_SIDECARS = ("", "-wal", "-shm")
#: Bytes 18 and 19 of a database header: the read and write format versions; 1 = rollback mode.
_ROLLBACK_FORMAT = b"\x01\x01"


Synchronous = Literal["full", "normal"]


def open_checked(
    path: Path,
    init: Callable[[sqlite3.Connection], object],
    *,
    synchronous: Synchronous = "normal",
    on_rebuilt: Callable[[sqlite3.Connection], None] | None = None,
) -> sqlite3.Connection:
    """Open `path` in WAL mode, check it (`PRAGMA quick_check`, and that it holds no other
    database's tables) and run `init` (create the schema). What fails is moved aside and
    logged at WARNING (see the module docstring); a fresh database is created where the file
    went, on which `on_rebuilt` then runs, also when only a -wal was set aside (commits may be
    lost either way: a store whose keys must never repeat moves them past the lost ones here).
    Raises StorageError if the file cannot be opened for another reason (locked by another
    process, an I/O error: not proof of damage, it is kept) or a new one cannot be made.

    `synchronous`: "full" = a commit survives a power cut; "normal" (in WAL mode) = it survives
    a process crash, and a power cut may roll back the last commits, never corrupt the file."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StorageError(f"cannot create folder for database {path}: {exc.strerror}") from exc
    tables = _tables_made_by(init)
    lost = False
    conn: sqlite3.Connection | None = None
    try:
        _set_aside_stale_journal(path)
        lost = _set_aside_what_is_not_a_database(path, tables)
        conn = _open(path, init, synchronous, tables)
    except sqlite3.OperationalError as exc:
        # Locked by another process, unreadable, I/O error: not proof of corruption, keep the file.
        raise StorageError(f"cannot open database {path}: {exc}") from exc
    except sqlite3.DatabaseError as exc:  # not a database, malformed, failed quick_check
        aside = _move_aside(path)
        log.warning("database %s is corrupt (%s); moved it to %s and started a new one", path, exc, aside)
        lost = True
    try:
        if conn is None:
            conn = _open(path, init, synchronous, tables)
        if lost and on_rebuilt is not None:
            on_rebuilt(conn)
        return conn
    except sqlite3.Error as exc:
        if conn is not None:
            conn.close()
        raise StorageError(f"cannot create database {path}: {exc}") from exc


def _open(
    path: Path,
    init: Callable[[sqlite3.Connection], object],
    synchronous: Synchronous,
    tables: frozenset[str],
) -> sqlite3.Connection:
    conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={'FULL' if synchronous == 'full' else 'NORMAL'}")
        problem = _problem(conn, tables)
        if problem is not None:
            raise sqlite3.DatabaseError(problem)
        init(conn)
    except sqlite3.Error:
        conn.close()
        raise
    return conn


def _problem(conn: sqlite3.Connection, tables: frozenset[str]) -> str | None:
    """Why the open database is not (a damaged or older form of) the one `init` makes, or None."""
    result = conn.execute("PRAGMA quick_check").fetchone()
    if result is None or result[0] != "ok":
        return f"quick_check: {result[0] if result else 'no result'}"
    found = {name for (name,) in conn.execute(_TABLES)}
    if found and tables and not found & tables:
        return f"it holds another database's tables ({', '.join(sorted(found)[:5])})"
    return None


_TABLES = "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"


def _tables_made_by(init: Callable[[sqlite3.Connection], object]) -> frozenset[str]:
    """The tables `init` creates, from running it on an empty in-memory database."""
    mem = sqlite3.connect(":memory:", isolation_level=None)
    try:
        init(mem)
        return frozenset(name for (name,) in mem.execute(_TABLES))
    except sqlite3.Error:
        return frozenset()  # an init that needs a real file: skip the foreign-table check
    finally:
        mem.close()


def _set_aside_stale_journal(path: Path) -> None:
    """A -journal beside a database that is not in rollback mode is not its own: set it aside
    before SQLite rolls its pages into this file."""
    journal = path.with_name(path.name + "-journal")
    if not journal.is_file() or _header_format(path) == _ROLLBACK_FORMAT:
        return
    aside = journal.with_name(f"{journal.name}.stale-{_stamp()}")
    _rename(journal, aside)
    log.warning(
        "database %s: the rollback journal %s is not its own (the database is in WAL mode or new); "
        "moved it to %s",
        path,
        journal,
        aside,
    )


def _set_aside_what_is_not_a_database(path: Path, tables: frozenset[str]) -> bool:
    """A directory where the file should be, or a -wal that does not fit the database: set
    aside before the database is opened for writing (closing that connection would copy the
    -wal's pages into the file). Returns whether anything was set aside."""
    if path.is_dir():
        aside = _move_aside(path)
        log.warning(
            "database %s is a directory, not a database; moved it to %s and started a new one", path, aside
        )
        return True
    if path.is_file() and not os.access(path, os.R_OK | os.W_OK):
        # Another user's file (e.g. made by a run as root): kept whole, out of this agent's way.
        aside = _move_aside(path)
        log.warning(
            "database %s cannot be read and written by this user (uid %d); moved it to %s, with "
            "what it holds, and started a new one",
            path,
            os.getuid(),
            aside,
        )
        return True
    wal = path.with_name(path.name + "-wal")
    if not wal.is_file() or wal.stat().st_size == 0:
        if path.is_file() and path.stat().st_size == 0:
            # SQLite would take it for a new database: say so, and let the store move its keys on.
            log.warning(
                "database %s is an empty file (0 bytes): what it held is gone; started a new one", path
            )
            return True
        return False
    problem = _inspect(path, tables) if path.is_file() else "there is no database beside it"
    if problem is None:
        return False
    stamp = _stamp()
    for suffix in ("-wal", "-shm"):
        src = path.with_name(path.name + suffix)
        if src.exists():
            _rename(src, src.with_name(f"{src.name}.corrupt-{stamp}"))
    if path.is_file() and _inspect(path, tables) is None:
        log.warning(
            "database %s: its write-ahead log does not fit it (%s); moved %s aside as %s.corrupt-%s "
            "and kept the database (commits only in that log are lost)",
            path,
            problem,
            wal,
            wal.name,
            stamp,
        )
        return True
    if path.is_file():
        raise sqlite3.DatabaseError(f"{problem}, also without its write-ahead log")
    log.warning("database %s: moved the stale write-ahead log %s aside (%s)", path, wal, problem)
    return False


def _inspect(path: Path, tables: frozenset[str]) -> str | None:
    """`_problem` through a read-only connection, which cannot write the -wal into the file."""
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None)
    try:
        return _problem(conn, tables)
    except sqlite3.OperationalError:
        raise  # locked, unreadable: not proof of damage (the caller keeps the files)
    except sqlite3.DatabaseError as exc:  # not a database, malformed
        return str(exc)
    finally:
        conn.close()


def _header_format(path: Path) -> bytes | None:
    try:
        with open(path, "rb") as f:
            header = f.read(20)
    except OSError:
        return None
    return header[18:20] if header.startswith(b"SQLite format 3\x00") else None


def _stamp() -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())


def _rename(src: Path, dst: Path) -> None:
    try:
        os.replace(src, dst)
    except OSError as exc:
        raise StorageError(f"cannot move {src} aside: {exc.strerror}") from exc


def _move_aside(path: Path) -> Path:
    target = path.with_name(f"{path.name}.corrupt-{_stamp()}")
    for suffix in _SIDECARS:
        src = path.with_name(path.name + suffix)
        if src.exists():
            _rename(src, target.with_name(target.name + suffix))
    return target
