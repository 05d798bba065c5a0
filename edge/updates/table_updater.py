"""The device's lookup-table updaters: one ManifestSubscriber (see subscriber.py) per model with
a table, on table topics apart from the model manifests. Each swaps its own model's TableLookup
without a restart.

A model's updater listens on that model's table topics (Topics.table_manifest_*(..., model));
the default lookup model's also listens on the topics of manifests that name no model (those
from before tables were per model). A manifest for another model, or for a model this device
does not serve with a table, is refused and counted: nothing swaps."""

from __future__ import annotations

import time
from collections.abc import Callable

from pydantic import BaseModel

from edgecascade.edge.config.profile import DeviceProfile
from edgecascade.edge.lookup import default_lookup_model, lookup_paths
from edgecascade.edge.lookup.table_lookup import TableLookup
from edgecascade.edge.updates.selection import ManifestBook, check_table_manifest
from edgecascade.edge.updates.subscriber import ManifestSubscriber
from edgecascade.edge.updates.table_pipeline import TablePipeline
from edgecascade.edge.updates.table_store import TableStore
from edgecascade.shared.errors import UpdateError
from edgecascade.shared.manifest import UpdateState
from edgecascade.shared.mqtt import MqttConnection, Topics
from edgecascade.shared.table_manifest import TableManifest, TableStatus
from edgecascade.shared.version import __version__


class TableBook(ManifestBook[TableManifest]):
    """A ManifestBook over several sets of device/group/all topics (a model's own and, for the
    default model, the model-less ones): the same level on either counts the same."""

    def __init__(self, topics: Topics, device: str, groups: list[str], models: list[str | None]) -> None:
        first, *others = models
        super().__init__(
            topics.table_manifest_device(device, first),
            [topics.table_manifest_group(g, first) for g in groups],
            topics.table_manifest_all(first),
        )
        self.device_topics = {topics.table_manifest_device(device, m) for m in models}
        self.group_topics |= {topics.table_manifest_group(g, m) for g in groups for m in others}
        # What ManifestSubscriber.start does not subscribe to (it takes device_topic,
        # group_topics and all_topic): the other sets' device and all levels.
        self.extra_topics = sorted(
            {
                *(topics.table_manifest_device(device, m) for m in others),
                *(topics.table_manifest_all(m) for m in others),
            }
        )

    def _specificity(self, topic: str) -> int:
        return 2 if topic in self.device_topics else 1 if topic in self.group_topics else 0


class TableUpdater(ManifestSubscriber[TableManifest]):
    """Service `table-updater` (the default model's) or `table-updater-<model>`: swaps
    `lookup`, model `model`'s table, without a restart."""

    kind = "table"
    pipeline: TablePipeline
    book: TableBook

    def __init__(
        self,
        profile: DeviceProfile,
        connection: MqttConnection,
        lookup: TableLookup,
        *,
        model: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(profile, connection, clock)
        default = default_lookup_model(profile)
        self.model = model or default or ""
        self.is_default = self.model == default
        self.name = "table-updater" if self.is_default else f"table-updater-{self.model}"
        self.lookup = lookup
        self.unknown_model = 0  # manifests for a model this device serves no table for
        self.other_model = 0  # manifests for another of its models, on this model's topics
        store = TableStore(lookup_paths(profile, self.model).tables)
        models: list[str | None] = [self.model, None] if self.is_default else [self.model]
        self._attach(
            TableBook(self.topics, profile.device_id, list(profile.groups), models),
            store,
            TablePipeline(lookup, store, self.transports, max_bytes=self.max_bytes),
            self.topics.table_status(profile.device_id, None if self.is_default else self.model),
        )
        self.status = self._make_status("active" if lookup.table is not None else "idle")

    def start(self) -> None:
        super().start()
        for topic in self.book.extra_topics:
            self.connection.subscribe(topic, self._on_manifest, qos=1)

    def _parse(self, payload: bytes) -> TableManifest:
        manifest = TableManifest.parse(payload)
        named = manifest.model
        if named is None and not self.is_default:
            raise UpdateError(f"table manifest names no model; model {self.model!r} takes only its own")
        if named is not None and named != self.model:
            with_tables = {e.name for e in self.profile.model_entries() if e.lookups}
            if named not in with_tables:
                self.unknown_model += 1
                raise UpdateError(
                    f"table for unknown model {named!r}; this device serves tables for {sorted(with_tables)}"
                )
            self.other_model += 1
            raise UpdateError(f"table for model {named!r} arrived on model {self.model!r}'s topics")
        return manifest

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
            model=None if self.is_default else self.model,
            table=table.meta.name if table is not None else None,
            active_version=table.meta.version if table is not None else None,
            state=state,
            updated_at=self.clock(),
            **fields,
        )

    def counters(self) -> dict[str, int]:
        """Refused manifests, and of them those for a model this updater does not serve."""
        return {
            "refused_manifests": self.refusals.count,
            "unknown_model": self.unknown_model,
            "other_model": self.other_model,
        }
