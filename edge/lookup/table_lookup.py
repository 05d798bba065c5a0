"""The precomputed prediction table as a cascade lookup: a hit answers without the model."""

from __future__ import annotations

import logging
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

from edgecascade.edge.answer import Answer, ModelRef
from edgecascade.edge.cascade import CascadeRequest
from edgecascade.shared.errors import InputError, StorageError
from edgecascade.shared.features.spec import ENCODING_VERSION
from edgecascade.shared.lookup import TableFile, application_key, content_key

log = logging.getLogger(__name__)


@dataclass
class TableStats:
    """Counters for telemetry and metrics. `load_failures` counts refused table files."""

    hits: int = 0
    misses: int = 0
    unkeyable: int = 0  # requests with no usable key (no application key, non-finite features)
    load_failures: int = 0
    replacements: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class TableLookup:
    """Answers from a lookup table (source "table", with the table's version). Holds no table
    until one loads; `replace()` swaps in a validated new table atomically, so readers always
    see one whole table and a refused file leaves the previous one serving."""

    def __init__(self, *, encoding_version: int = ENCODING_VERSION, verify_checksum: bool = True) -> None:
        self.encoding_version = encoding_version
        self.verify_checksum = verify_checksum
        self.stats = TableStats()
        self._table: TableFile | None = None
        self._swap = threading.Lock()

    @property
    def table(self) -> TableFile | None:
        """The table serving now, or None."""
        return self._table

    @property
    def version(self) -> str | None:
        table = self._table
        return table.meta.version if table else None

    def replace(self, path: Path) -> TableFile:
        """Validate `path` and make it the serving table; returns it. On a refused file raises
        StorageError and keeps the previous table. Called at start-up and by table updates."""
        try:
            new = TableFile.open(
                path, encoding_version=self.encoding_version, verify_checksum=self.verify_checksum
            )
        except StorageError as exc:
            self.stats.load_failures += 1
            log.error("lookup table refused, keeping %s: %s", self.version or "no table", exc)
            raise
        with self._swap:
            old, self._table = self._table, new
            self.stats.replacements += 1
        # The old map is released when its last in-flight reader drops it (no close under readers).
        log.info(
            "lookup table %s %s loaded from %s: %d entries, %s keys, from %s %s (was %s)",
            new.meta.name,
            new.meta.version,
            path,
            len(new),
            new.meta.key_scheme,
            new.meta.cloud_model,
            new.meta.cloud_model_version,
            old.meta.version if old else "none",
        )
        return new

    def lookup(self, request: CascadeRequest) -> Answer | None:
        """The table's answer for `request`, or None (no table, no key, or not in the table)."""
        table = self._table
        if table is None:
            return None
        meta = table.meta
        try:
            if meta.key_scheme == "application":
                if request.key is None:
                    self.stats.unkeyable += 1
                    return None
                key = application_key(request.key)
            else:
                key = content_key(request.features, meta.encoding_version)
        except InputError:
            self.stats.unkeyable += 1
            return None
        index = table.find(key)
        if index is None:
            self.stats.misses += 1
            return None
        self.stats.hits += 1
        probs = table.probabilities(index)
        top = int(probs.argmax())
        return Answer(
            label=meta.labels[top],
            class_index=top,
            confidence=float(probs[top]),
            source="table",
            edge_model=None,
            cloud_model=ModelRef(meta.cloud_model, meta.cloud_model_version),
            table_version=meta.version,
            reason="table hit",
            request_id=request.request_id,
            probabilities=tuple(probs.tolist()),
        )

    def close(self) -> None:
        with self._swap:
            table, self._table = self._table, None
        if table is not None:
            table.close()
