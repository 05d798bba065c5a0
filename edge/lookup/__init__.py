"""Answers without the model: precomputed prediction tables and the cache of cloud answers.

Every classifier with `lookups` on has its own table and cache: the agent calls
`build(profile, entry)` per model and passes `parts.lookups` and `parts.sinks` to its Cascade;
that model's table updates call `parts.table.replace(path)`.

Where a model's files live (`LookupPaths`): the default model (`default_lookup_model`, the one
that had the only table before tables were per model) keeps the paths it always had
(<data_dir>/tables, <data_dir>/answer_cache.sqlite3, [lookup] table and cache.path), so a
device upgraded in place keeps its delivered table and cached answers. Every other model's
files are under <data_dir>/lookups/<model>/."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from edgecascade.edge.cascade import AnswerLookup, CloudAnswerSink
from edgecascade.edge.config.models import ModelEntry
from edgecascade.edge.config.profile import DeviceProfile
from edgecascade.edge.lookup.answer_cache import AnswerCache, CacheStats
from edgecascade.edge.lookup.table_lookup import TableLookup, TableStats
from edgecascade.shared.errors import StorageError
from edgecascade.shared.features.spec import ENCODING_VERSION

log = logging.getLogger(__name__)

__all__ = [
    "AnswerCache",
    "CacheStats",
    "LookupParts",
    "LookupPaths",
    "TableLookup",
    "TableStats",
    "build",
    "default_lookup_model",
    "lookup_paths",
]

CACHE_FILE = "answer_cache.sqlite3"
TABLES_DIR = "tables"
PER_MODEL_DIR = "lookups"


@dataclass(frozen=True)
class LookupPaths:
    """Where one model's lookup files are: its delivered-table store, its factory table (None:
    no table until one is delivered) and its answer-cache file."""

    tables: Path
    factory_table: Path | None
    cache: Path


def default_lookup_model(profile: DeviceProfile) -> str | None:
    """The model a table manifest naming no model is for, and the one keeping the pre-per-model
    paths: the first [[models]] entry with lookups on. (Which entries are classifiers is known
    only once their cards are read; the agent gives lookups to classifiers only.)"""
    return next((e.name for e in profile.model_entries() if e.lookups), None)


def lookup_paths(profile: DeviceProfile, model: str) -> LookupPaths:
    """The files of `model`'s table and cache (see the module docstring)."""
    entry = next((e for e in profile.model_entries() if e.name == model), None)
    own_table = entry.table if entry is not None else None
    if model == default_lookup_model(profile):
        section = profile.lookup
        return LookupPaths(
            profile.data_dir / TABLES_DIR,
            own_table or section.table,
            section.cache.path or profile.data_dir / CACHE_FILE,
        )
    root = profile.data_dir / PER_MODEL_DIR / model
    return LookupPaths(root / TABLES_DIR, own_table, root / CACHE_FILE)


@dataclass
class LookupParts:
    """What `build` made: the table (always present, possibly empty) and the cache (None when
    disabled or its storage is unusable)."""

    table: TableLookup
    cache: AnswerCache | None
    lookups: list[AnswerLookup] = field(default_factory=list)
    sinks: list[CloudAnswerSink] = field(default_factory=list)
    model: str = ""  # the [[models]] entry these answer for
    paths: LookupPaths | None = None

    def stats(self) -> dict[str, int]:
        """Flat counters for telemetry and metrics: table_hits, cache_hits, cache_evictions, ..."""
        out = {f"table_{k}": v for k, v in self.table.stats.as_dict().items()}
        if self.cache is not None:
            out.update({f"cache_{k}": v for k, v in self.cache.stats.as_dict().items()})
        return out

    def close(self) -> None:
        self.table.close()
        if self.cache is not None:
            self.cache.close()


def build(
    profile: DeviceProfile, entry: ModelEntry | str | None = None, *, encoding_version: int = ENCODING_VERSION
) -> LookupParts:
    """`entry`'s table and cache (default: the default lookup model's), table first, then
    cache, as the cascade should consult them. The table is the delivered one (that model's
    table updates' `active` pointer) if any, else the previous delivered one, else its factory
    table. Never raises for a bad table or cache file: the agent then serves with the next
    candidate or its model alone (logged at ERROR)."""
    from edgecascade.edge.updates.table_store import delivered_table

    name = entry.name if isinstance(entry, ModelEntry) else entry or default_lookup_model(profile) or ""
    paths = lookup_paths(profile, name)
    section = profile.lookup
    table = TableLookup(encoding_version=encoding_version, verify_checksum=section.verify_checksum)
    delivered = delivered_table(paths.tables)
    candidates = [i.path for i in delivered if i is not None] if delivered else []
    if paths.factory_table is not None:
        candidates.append(paths.factory_table)
    for path in candidates:
        try:
            table.replace(path)
            break
        except StorageError:
            continue  # logged and counted by replace(); try the next, else serve without a table
    cache: AnswerCache | None = None
    if section.cache.enabled:
        try:
            cache = AnswerCache(
                paths.cache,
                max_entries=section.cache.max_entries,
                max_bytes=int(section.cache.max_mb * 1024 * 1024),
                ttl_s=section.cache.ttl_s,
                encoding_version=encoding_version,
            )
        except StorageError as exc:
            log.error("answer cache of model %s disabled: %s", name, exc)
    parts = LookupParts(table, cache, lookups=[table], model=name, paths=paths)
    if cache is not None:
        parts.lookups.append(cache)
        parts.sinks.append(cache)
    return parts
