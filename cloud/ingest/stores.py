"""Which telemetry store serves which URL. A store is imported only when chosen, so the
SQLite default runs where psycopg is not installed. Adding a store is one module with a
class implementing `TelemetryStore` (cloud/ingest/store.py) and one line here."""

from __future__ import annotations

import importlib

from edgecascade.cloud.ingest.store import TelemetryStore
from edgecascade.shared.errors import ConfigError

#: URL scheme -> "module:Class"; the class is called with the URL's remainder (SQLite: a
#: path) or, for PostgreSQL, the whole URL.
STORES: dict[str, str] = {
    "sqlite": "edgecascade.cloud.ingest.sqlite_store:SqliteStore",
    "postgresql": "edgecascade.cloud.ingest.postgres_store:PostgresStore",
}
_ALIASES = {"postgres": "postgresql"}


def open_store(url: str) -> TelemetryStore:
    """`postgresql://...` -> PostgresStore; `sqlite:///path`, or a plain path -> SqliteStore."""
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
    module_name, cls_name = STORES[scheme].split(":")
    cls = getattr(importlib.import_module(module_name), cls_name)
    store: TelemetryStore = cls(target)
    return store
