"""Which telemetry store serves which URL. A store is imported only when chosen, so the
SQLite default runs where psycopg is not installed. Adding a store is one module with a
class implementing `TelemetryStore` (cloud/ingest/store.py) and one line here."""

from __future__ import annotations

import importlib
import os
import stat

from edgecascade.cloud.ingest.store import TelemetryStore
from edgecascade.shared.config_errors import shorten
from edgecascade.shared.errors import ConfigError

#: URL scheme -> "module:Class"; the class is called with the URL's remainder (SQLite: a
#: path) or, for PostgreSQL, the whole URL.
STORES: dict[str, str] = {
    "sqlite": "edgecascade.cloud.ingest.sqlite_store:SqliteStore",
    "postgresql": "edgecascade.cloud.ingest.postgres_store:PostgresStore",
}
_ALIASES = {"postgres": "postgresql"}


def open_store(url: str, source: str = "--store") -> TelemetryStore:
    """`postgresql://...` -> PostgresStore; `sqlite:///path`, or a plain path -> SqliteStore.
    `source` (the flag or variable that gave `url`) is named in a ConfigError."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, target = "sqlite", url
    else:
        scheme = _ALIASES.get(scheme, scheme)
        if scheme not in STORES:
            raise ConfigError(
                f"unknown store scheme {scheme[:20]!r}: expected "
                f"{', '.join(f'{s}://' for s in sorted(STORES))} or a file path",
                key="store",
            )
        target = rest[1:] if scheme == "sqlite" else url  # sqlite:///path -> /path
    if scheme == "sqlite":
        _check_sqlite_path(target, source)
    module_name, cls_name = STORES[scheme].split(":")
    cls = getattr(importlib.import_module(module_name), cls_name)
    store: TelemetryStore = cls(target)
    return store


def _check_sqlite_path(target: str, source: str) -> None:
    """ConfigError unless `target` can be a database file. The SQLite opener moves a folder
    that stands where its database should be aside as damage (shared/sqlite_file.py): right
    for the agent's own data folder, wrong for a folder a user named by mistake."""
    if not target:
        raise ConfigError("empty path; give the database file's name", key=source)
    try:
        mode = os.stat(target).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return  # a new database (a parent that is a file fails when it is made, with its name)
    except OSError as exc:
        raise ConfigError(f"cannot use {shorten(target, 200)}: {exc.strerror}", key=source) from None
    if stat.S_ISDIR(mode):
        raise ConfigError(f"{shorten(target, 200)} is a folder; give the database file's name", key=source)
    if not stat.S_ISREG(mode):
        raise ConfigError(
            f"{shorten(target, 200)} is not a regular file (a device, pipe or socket)", key=source
        )
