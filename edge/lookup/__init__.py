"""Answers without the model: precomputed prediction tables and the cache of cloud answers.

The daemon calls `build(profile)` and passes `parts.lookups` and `parts.sinks` to the Cascade;
table updates call `parts.table.replace(path)`."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from edgecascade.edge.cascade import AnswerLookup, CloudAnswerSink
from edgecascade.edge.config.profile import DeviceProfile
from edgecascade.edge.lookup.answer_cache import AnswerCache, CacheStats
from edgecascade.edge.lookup.table_lookup import TableLookup, TableStats
from edgecascade.shared.errors import StorageError
from edgecascade.shared.features.spec import ENCODING_VERSION

log = logging.getLogger(__name__)

__all__ = ["AnswerCache", "CacheStats", "LookupParts", "TableLookup", "TableStats", "build"]

CACHE_FILE = "answer_cache.sqlite3"


@dataclass
class LookupParts:
    """What `build` made: the table (always present, possibly empty) and the cache (None when
    disabled or its storage is unusable)."""

    table: TableLookup
    cache: AnswerCache | None
    lookups: list[AnswerLookup] = field(default_factory=list)
    sinks: list[CloudAnswerSink] = field(default_factory=list)

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


def build(profile: DeviceProfile, *, encoding_version: int = ENCODING_VERSION) -> LookupParts:
    """Table first, then cache, as the cascade should consult them. The table is the delivered
    one (table updates' `active` pointer) if any, else the previous delivered one, else
    [lookup].table. Never raises for a bad table or cache file: the agent then serves with the
    next candidate or its model alone (logged at ERROR)."""
    from edgecascade.edge.updates.table_store import delivered_table

    section = profile.lookup
    table = TableLookup(encoding_version=encoding_version, verify_checksum=section.verify_checksum)
    delivered = delivered_table(profile)
    candidates = [i.path for i in delivered if i is not None] if delivered else []
    if section.table is not None:
        candidates.append(section.table)
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
                section.cache.path or profile.data_dir / CACHE_FILE,
                max_entries=section.cache.max_entries,
                max_bytes=int(section.cache.max_mb * 1024 * 1024),
                ttl_s=section.cache.ttl_s,
                encoding_version=encoding_version,
            )
        except StorageError as exc:
            log.error("answer cache disabled: %s", exc)
    parts = LookupParts(table, cache, lookups=[table])
    if cache is not None:
        parts.lookups.append(cache)
        parts.sinks.append(cache)
    return parts
