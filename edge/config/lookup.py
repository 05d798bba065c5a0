"""[lookup]: the precomputed prediction table and the on-device cache of cloud answers."""

from pydantic import Field

from edgecascade.edge.config.base import ProfilePath, Section


class CacheSection(Section):
    enabled: bool = Field(
        True, description="Cache every cloud answer by content key and answer repeats from it."
    )
    path: ProfilePath | None = Field(
        None, description="SQLite file of the cache; default <data_dir>/answer_cache.sqlite3."
    )
    max_entries: int = Field(
        10_000, ge=1, description="Least-recently-used answers are evicted beyond this count."
    )
    max_mb: float = Field(
        8.0, gt=0, description="Least-recently-used answers are evicted beyond this size, in MiB."
    )
    ttl_s: float = Field(
        7 * 24 * 3600.0,
        gt=0,
        description="An answer older than this is not used (and is deleted), in seconds.",
    )


class LookupSection(Section):
    table: ProfilePath | None = Field(
        None,
        description="Factory lookup table (built by `edgecascade models build-table`); unset = no table. "
        "Updated tables arrive like models and replace it at run time.",
    )
    verify_checksum: bool = Field(
        True, description="Check the table body's CRC-32 at load (about 15 ms per million entries)."
    )
    cache: CacheSection = Field(
        default_factory=CacheSection,
        description="Cache of cloud answers.",
    )
