"""The device's model updater: a daemon Service on the agent's shared MqttConnection.

It subscribes to its device, group and fleet manifest topics (retained; the most specific wins),
refuses unsigned, wrongly signed or incompatible manifests with a reason, runs the update
pipeline in one worker thread, watches health after a swap and rolls back on trouble, and keeps
its retained status topic current: downloading (progress), verifying, testing, active, failed,
rolled_back."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import paho.mqtt.client as mqtt

from edge.config.profile import DeviceProfile
from edge.model_slot import ModelSlot
from edge.updates.health import HealthMonitor
from edge.updates.pipeline import UpdatePipeline
from edge.updates.selection import ManifestBook, check_manifest
from edge.updates.store import Installed, UpdateStore, active_model, models_root
from edge.updates.transports import ArtifactTransport, HttpRangeTransport, MqttChunkTransport
from edgecascade import __version__
from shared.errors import EdgecascadeError, UpdateError
from shared.manifest import Manifest, UpdateState, UpdateStatus, load_public_key
from shared.mqtt import MqttConnection, Topics

log = logging.getLogger(__name__)


def profile_public_key_text(profile: DeviceProfile) -> str:
    cfg = profile.updates
    if cfg.public_key:
        return cfg.public_key
    if cfg.public_key_file is None:
        raise UpdateError("no fleet public key in the profile ([updates] public_key or public_key_file)")
    return cfg.public_key_file.read_text()


class ModelUpdater:
    """Service `model-updater`. `health` (optional) is fed by the cascade; `on_activated`
    callbacks get each manifest whose model starts serving (e.g. to apply its thresholds)."""

    name = "model-updater"

    def __init__(
        self,
        profile: DeviceProfile,
        connection: MqttConnection,
        slot: ModelSlot,
        *,
        health: HealthMonitor | None = None,
        current: Installed | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.profile = profile
        self.connection = connection
        self.health = health
        self.clock = clock
        self.public_key = load_public_key(profile_public_key_text(profile))
        self.topics = Topics(profile.fleet)
        device = profile.device_id
        self.book: ManifestBook[Manifest] = ManifestBook(
            self.topics.manifest_device(device),
            [self.topics.manifest_group(g) for g in profile.groups],
            self.topics.manifest_all(),
        )
        self.store = UpdateStore(models_root(profile))
        self.pipeline = UpdatePipeline(
            profile, slot, self.store, current or active_model(profile), self._transport
        )
        self.outcomes = self.store.outcomes()
        #: Called with the manifest of each model that starts serving (None: the factory model),
        #: at start() for the model serving then, after every swap and every rollback.
        self.on_activated: list[Callable[[Manifest | None], None]] = []
        self.status = self._make_status("active")
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
        self._activated(self.store.manifest_of(self.pipeline.current))
        self._thread = threading.Thread(target=self._run, name="model-updater", daemon=True)
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
                manifest = Manifest.parse(bytes(msg.payload))
                check_manifest(
                    manifest,
                    self.profile,
                    self.public_key,
                    __version__,
                    int(self.profile.updates.max_artifact_mb * 1024 * 1024),
                )
            except UpdateError as exc:
                log.warning("refused manifest on %s: %s", msg.topic, exc.reason)
                self._report(
                    "failed",
                    reason=exc.reason,
                    push_id=manifest.push_id if manifest else None,  # for the fleet's report only
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
        topic = self.topics.update_status(self.profile.device_id)
        self.connection.publish(topic, self.status.model_dump_json(), qos=1, retain=True)

    def _make_status(self, state: UpdateState, **fields: object) -> UpdateStatus:
        return UpdateStatus(
            device=self.profile.device_id,
            profile=self.profile.profile,
            groups=list(self.profile.groups),
            agent_version=__version__,
            model=self.profile.model.name,
            active_version=self.pipeline.current.version,
            state=state,
            updated_at=self.clock(),
            health=self.health.figures() if self.health is not None else {},
            **fields,
        )

    def _report(self, state: UpdateState, **fields: object) -> None:
        keep = {"target_version": self.status.target_version, "push_id": self.status.push_id}
        self.status = self._make_status(state, **{**keep, **fields})
        log.info("update status %s %s", state, fields.get("reason") or fields.get("progress") or "")
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

    def _finish(self, manifest: Manifest, outcome: str) -> None:
        self.outcomes[manifest.push_id] = outcome
        self.store.record_outcome(manifest.push_id, outcome)

    def _handle(self, manifest: Manifest) -> None:
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
            log.error("update to %s %s refused: %s", manifest.name, manifest.version, exc.reason)
            self._finish(manifest, "failed")
            self._report("failed", reason=exc.reason)
            return
        finally:
            self._job = None
        if not applied:
            self._wake.set()  # superseded: look at the newest manifest
            return
        self._finish(manifest, "active")
        # Thresholds first: when the fleet sees this state, the model serves with its own policy.
        self._activated(manifest)
        if manifest.rollback_of:
            self._report("rolled_back", reason=f"fleet rollback from {manifest.rollback_of}")
        else:
            self._report("active")
        self._watch(manifest)

    def _activated(self, manifest: Manifest | None) -> None:
        for callback in self.on_activated:
            try:
                callback(manifest)
            except EdgecascadeError as exc:  # e.g. thresholds that do not fit: keep serving
                log.error("on_activated %r failed for %s: %s", callback, manifest and manifest.version, exc)

    def _watch(self, manifest: Manifest) -> None:
        window = self.profile.updates.watch_window_s
        if self.health is None or window <= 0 or self.pipeline.previous is None:
            return
        self.health.begin(manifest)
        deadline = time.monotonic() + window
        while time.monotonic() < deadline and not self._stopping.is_set():
            if self._wake.wait(0.1):
                return  # a new manifest arrived: it decides what serves next
            reason = self.health.verdict()
            if reason is None:
                continue
            try:
                back = self.pipeline.rollback()
            except UpdateError as exc:
                self._report("failed", reason=f"{reason}; {exc.reason}")
                return
            self._finish(manifest, "rolled_back")
            self._activated(self.store.manifest_of(back))
            log.error("rolled back %s to %s: %s", manifest.version, back.version, reason)
            self._report("rolled_back", reason=f"{reason}; back to {back.version}")
            return
        if not self._stopping.is_set():
            self._report("active")  # the window passed: publish the new model's health figures
