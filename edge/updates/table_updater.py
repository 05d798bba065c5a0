"""The device's lookup-table updater: a ManifestSubscriber (see subscriber.py) for table
manifests, on their own topics apart from the model manifests. It swaps the TableLookup's table
without a restart."""

from __future__ import annotations

import time
from collections.abc import Callable

from pydantic import BaseModel

from edgecascade.edge.config.profile import DeviceProfile
from edgecascade.edge.lookup.table_lookup import TableLookup
from edgecascade.edge.updates.selection import ManifestBook, check_table_manifest
from edgecascade.edge.updates.subscriber import ManifestSubscriber
from edgecascade.edge.updates.table_pipeline import TablePipeline
from edgecascade.edge.updates.table_store import TableStore, tables_root
from edgecascade.shared.manifest import UpdateState
from edgecascade.shared.mqtt import MqttConnection
from edgecascade.shared.table_manifest import TableManifest, TableStatus
from edgecascade.shared.version import __version__


class TableUpdater(ManifestSubscriber[TableManifest]):
    """Service `table-updater`: swaps `lookup`'s table without a restart."""

    name = "table-updater"
    kind = "table"
    pipeline: TablePipeline

    def __init__(
        self,
        profile: DeviceProfile,
        connection: MqttConnection,
        lookup: TableLookup,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(profile, connection, clock)
        self.lookup = lookup
        store = TableStore(tables_root(profile))
        self._attach(
            ManifestBook(
                self.topics.table_manifest_device(profile.device_id),
                [self.topics.table_manifest_group(g) for g in profile.groups],
                self.topics.table_manifest_all(),
            ),
            store,
            TablePipeline(lookup, store, self.transports, max_bytes=self.max_bytes),
            self.topics.table_status(profile.device_id),
        )
        self.status = self._make_status("active" if lookup.table is not None else "idle")

    def _parse(self, payload: bytes) -> TableManifest:
        return TableManifest.parse(payload)

    def _check(self, manifest: TableManifest) -> None:
        check_table_manifest(
            manifest, self.profile, __version__, self.max_bytes, self.lookup.encoding_version
        )

    def _serving_version(self) -> str | None:
        current = self.pipeline.current
        return current.version if current is not None else None

    def _make_status(self, state: UpdateState, **fields: object) -> BaseModel:
        table = self.lookup.table
        return TableStatus(
            device=self.profile.device_id,
            groups=list(self.profile.groups),
            table=table.meta.name if table is not None else None,
            active_version=table.meta.version if table is not None else None,
            state=state,
            updated_at=self.clock(),
            **fields,
        )
