"""The device's lookup-table updater: a daemon Service on the agent's shared MqttConnection.

It subscribes to its device, group and fleet table-manifest topics (retained, apart from the
model manifests; the most specific wins), refuses unsigned, wrongly signed or incompatible
manifests with a reason, applies the effective one in a worker thread (TablePipeline) and keeps
its retained table-status topic current: downloading (progress), verifying, testing, active,
failed, rolled_back."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import paho.mqtt.client as mqtt

from edge.config.profile import DeviceProfile
from edge.lookup.table_lookup import TableLookup
from edge.updates.selection import ManifestBook, check_table_manifest
from edge.updates.table_pipeline import TablePipeline
from edge.updates.table_store import TableStore, tables_root
from edge.updates.transports import ArtifactTransport, HttpRangeTransport, MqttChunkTransport
from edge.updates.updater import profile_public_key_text
from edgecascade import __version__
from shared.errors import UpdateError
from shared.manifest import UpdateState, load_public_key
from shared.mqtt import MqttConnection, Topics
from shared.table_manifest import TableManifest, TableStatus

log = logging.getLogger(__name__)


class TableUpdater:
    """Service `table-updater`: swaps `lookup`'s table without a restart."""

    name = "table-updater"

    def __init__(
        self,
        profile: DeviceProfile,
        connection: MqttConnection,
        lookup: TableLookup,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.profile = profile
        self.connection = connection
        self.lookup = lookup
        self.clock = clock
        self.public_key = load_public_key(profile_public_key_text(profile))
        self.topics = Topics(profile.fleet)
        self.book: ManifestBook[TableManifest] = ManifestBook(
            self.topics.table_manifest_device(profile.device_id),
            [self.topics.table_manifest_group(g) for g in profile.groups],
            self.topics.table_manifest_all(),
        )
        self.max_bytes = int(profile.updates.max_artifact_mb * 1024 * 1024)
        self.store = TableStore(tables_root(profile))
        self.pipeline = TablePipeline(lookup, self.store, self._transport, max_bytes=self.max_bytes)
        self.outcomes = self.store.outcomes()
        self.status = self._make_status("active" if lookup.table is not None else "idle")
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._job: tuple[str, threading.Event] | None = None
        self._thread: threading.Thread | None = None
        self._http: HttpRangeTransport | None = None

    # -- Service ------------------------------------------------------------------------------
    def start(self) -> None:
        self.connection.on_connect_hooks.append(self._publish_status)
        for topic in (self.book.device_topic, *sorted(self.book.group_topics), self.book.all_topic):
            self.connection.subscribe(topic, self._on_manifest, qos=1)
        self._publish_status()
        self._thread = threading.Thread(target=self._run, name="table-updater", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float) -> None:
        self._stopping.set()
        if self._job:
            self._job[1].set()
        self._wake.set()
        if self._thread:
            self._thread.join(timeout_s)
        if self._http:
            self._http.close()

    # -- MQTT side ----------------------------------------------------------------------------
    def _on_manifest(self, msg: mqtt.MQTTMessage) -> None:
        if not msg.payload:
            self.book.put(msg.topic, None)  # the fleet manager cleared this level
        else:
            manifest = None
            try:
                manifest = TableManifest.parse(bytes(msg.payload))
                check_table_manifest(
                    manifest,
                    self.profile,
                    self.public_key,
                    __version__,
                    self.max_bytes,
                    self.lookup.encoding_version,
                )
            except UpdateError as exc:
                log.warning("refused table manifest on %s: %s", msg.topic, exc.reason)
                self._report(
                    "failed",
                    reason=exc.reason,
                    push_id=manifest.push_id if manifest else None,
                    target_version=manifest.version if manifest else None,
                )
                return
            self.book.put(msg.topic, manifest)
        effective = self.book.effective()
        job = self._job
        if job and (effective is None or effective.push_id != job[0]):
            job[1].set()  # a newer manifest supersedes the download in progress
        self._wake.set()

    def _publish_status(self) -> None:
        topic = self.topics.table_status(self.profile.device_id)
        self.connection.publish(topic, self.status.model_dump_json(), qos=1, retain=True)

    def _make_status(self, state: UpdateState, **fields: object) -> TableStatus:
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

    def _report(self, state: UpdateState, **fields: object) -> None:
        keep = {"target_version": self.status.target_version, "push_id": self.status.push_id}
        self.status = self._make_status(state, **{**keep, **fields})
        log.info("table status %s %s", state, fields.get("reason") or fields.get("progress") or "")
        self._publish_status()

    def _transport(self, route: str) -> ArtifactTransport:
        cfg = self.profile.updates
        if route == "http":
            if self._http is None:
                self._http = HttpRangeTransport(
                    request_timeout_s=cfg.http_timeout_s,
                    timeout_s=cfg.download_timeout_s,
                    range_bytes=cfg.http_range_kb * 1024,
                    verify=str(cfg.http_ca) if cfg.http_ca else True,
                )
            return self._http
        return MqttChunkTransport(
            self.connection, stall_timeout_s=cfg.stall_timeout_s, timeout_s=cfg.download_timeout_s
        )

    # -- worker ---------------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait()
            self._wake.clear()
            manifest = self.book.effective()
            if self._stopping.is_set() or manifest is None or manifest.push_id in self.outcomes:
                continue
            self._handle(manifest)

    def _finish(self, manifest: TableManifest, outcome: str) -> None:
        self.outcomes[manifest.push_id] = outcome
        self.store.record_outcome(manifest.push_id, outcome)

    def _handle(self, manifest: TableManifest) -> None:
        ids = {"push_id": manifest.push_id, "target_version": manifest.version}
        if self.pipeline.is_current(manifest):  # e.g. restarted after the swap
            self._finish(manifest, "active")
            self._report("active", **ids)
            return
        stop = threading.Event()
        self._job = (manifest.push_id, stop)
        self.status = self._make_status("downloading", **ids)
        try:
            applied = self.pipeline.apply(manifest, stop, self._report)
        except UpdateError as exc:
            log.error("table %s %s refused: %s", manifest.name, manifest.version, exc.reason)
            self._finish(manifest, "failed")
            self._report("failed", reason=exc.reason)
            return
        finally:
            self._job = None
        if not applied:
            self._wake.set()  # superseded: look at the newest manifest
            return
        self._finish(manifest, "active")
        if manifest.rollback_of:
            self._report("rolled_back", reason=f"fleet rollback from {manifest.rollback_of}")
        else:
            self._report("active")
