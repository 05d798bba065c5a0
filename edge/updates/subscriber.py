"""What the model and table updaters share: a daemon Service on the agent's MqttConnection that
subscribes to the device, group and fleet manifest topics of its kind (retained; the newest
signed instruction wins), applies the effective one through its pipeline in one worker thread,
and keeps a retained status topic current: downloading (progress), verifying, testing, active,
failed, rolled_back.

A manifest that is no instruction for this device (garbage, forged, replayed, signed for
another target) is counted and logged and changes nothing else: the status keeps its last good
state. A signed instruction the device cannot follow (another profile, an older version without
a rollback, a candidate that fails its test) is reported as failed for its push.

A subclass says what differs: how a manifest is parsed and checked, what its status message
holds, and what happens once a manifest's artifact serves."""

from __future__ import annotations

import abc
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Generic, Protocol, TypeVar

import paho.mqtt.client as mqtt
from pydantic import BaseModel

from edgecascade.edge.cloud_client.tls import artifact_tls
from edgecascade.edge.config.profile import DeviceProfile
from edgecascade.edge.updates.download import Report
from edgecascade.edge.updates.refusals import RefusalCounter
from edgecascade.edge.updates.selection import Audience, M, ManifestBook, admit, check_not_older
from edgecascade.edge.updates.store import VersionStore
from edgecascade.edge.updates.transports import TransportContext, TransportPool
from edgecascade.shared.errors import UpdateError
from edgecascade.shared.manifest import UpdateState, load_public_key
from edgecascade.shared.mqtt import MqttConnection, Topics

log = logging.getLogger(__name__)


def profile_public_key_text(profile: DeviceProfile) -> str:
    cfg = profile.updates
    if cfg.public_key:
        return cfg.public_key
    if cfg.public_key_file is None:
        raise UpdateError("no fleet public key in the profile ([updates] public_key or public_key_file)")
    return cfg.public_key_file.read_text()


_M_contra = TypeVar("_M_contra", contravariant=True)


class Pipeline(Protocol[_M_contra]):
    """UpdatePipeline, TablePipeline: bring a manifest's artifact into service."""

    def is_current(self, manifest: _M_contra) -> bool: ...

    def apply(self, manifest: _M_contra, stop: threading.Event, report: Report) -> bool: ...


class ManifestSubscriber(abc.ABC, Generic[M]):
    """Base of ModelUpdater and TableUpdater. A subclass's __init__ calls this one, then
    `_attach` with its manifest book, store and pipeline, then sets `status`."""

    name: str = ""
    #: The manifest's kind in log lines ("model", "table").
    kind: str = ""

    book: ManifestBook[M]
    store: VersionStore
    pipeline: Pipeline[M]
    status_topic: str
    outcomes: dict[str, str]  # push id -> final outcome, kept by the store across restarts
    status: Any  # the kind's status model (UpdateStatus, TableStatus)

    def __init__(
        self, profile: DeviceProfile, connection: MqttConnection, clock: Callable[[], float] = time.time
    ) -> None:
        self.profile = profile
        self.connection = connection
        self.clock = clock
        self.public_key = load_public_key(profile_public_key_text(profile))
        self.topics = Topics(profile.fleet)
        self.max_bytes = int(profile.updates.max_artifact_mb * 1024 * 1024)
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._job: tuple[str, threading.Event] | None = None
        self._thread: threading.Thread | None = None
        self.transports = TransportPool(
            TransportContext(connection, profile.updates, verify=artifact_tls(profile).verify)
        )
        self.audience = Audience.of(profile, self.public_key)
        self.refusals = RefusalCounter(self.kind, self._publish_refusals)

    def _attach(
        self, book: ManifestBook[M], store: VersionStore, pipeline: Pipeline[M], status_topic: str
    ) -> None:
        self.book = book
        self.store = store
        self.pipeline = pipeline
        self.status_topic = status_topic
        self.outcomes = store.outcomes()
        self.last = store.instruction()

    # -- what a kind defines ------------------------------------------------------------------
    @abc.abstractmethod
    def _parse(self, payload: bytes) -> M:
        """The manifest in a payload; UpdateError if it is not one."""

    @abc.abstractmethod
    def _check(self, manifest: M) -> None:
        """UpdateError with the reason if this device cannot follow an admitted manifest."""

    @abc.abstractmethod
    def _serving_version(self) -> str | None:
        """The version serving now (None: nothing serves), for the rollback-protection rule."""

    @abc.abstractmethod
    def _make_status(self, state: UpdateState, **fields: object) -> BaseModel:
        """The retained status message for `state`."""

    def _addressed(self, manifest: M) -> None:
        """UpdateError if an admitted (signed) manifest is not for this subscriber: refused and
        counted like garbage. Default: every admitted manifest is."""

    def _starting(self) -> None:
        """Called by start() before the worker runs (which may make another artifact serve)."""

    def _serving(self, manifest: M) -> None:
        """Called once `manifest`'s artifact serves (after a swap or a fleet rollback)."""
        if manifest.rollback_of:
            self._report("rolled_back", reason=f"fleet rollback from {manifest.rollback_of}")
        else:
            self._report("active")

    # -- Service ------------------------------------------------------------------------------
    def start(self) -> None:
        self.connection.on_connect_hooks.append(self._publish_status)
        for topic in (self.book.device_topic, *sorted(self.book.group_topics), self.book.all_topic):
            self.connection.subscribe(topic, self._on_manifest, qos=1)
        self._publish_status()
        self._starting()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float) -> None:
        self._stopping.set()
        self.refusals.cancel()
        if self._job:
            self._job[1].set()
        self._wake.set()
        if self._thread:
            self._thread.join(timeout_s)
        self.transports.close()

    # -- MQTT side ----------------------------------------------------------------------------
    def _on_manifest(self, msg: mqtt.MQTTMessage) -> None:
        if not msg.payload:
            self.book.put(msg.topic, None)  # the fleet manager cleared this level
        else:
            try:
                manifest = self._parse(bytes(msg.payload))
                admit(manifest, self.audience, self.last)
                self._addressed(manifest)
            except UpdateError as exc:
                self.refusals.refuse(msg.topic, exc.reason)
                return
            if not self._compatible(manifest):
                return
            self.book.put(msg.topic, manifest)
        effective = self.book.effective()
        job = self._job
        if job and (effective is None or effective.push_id != job[0]):
            job[1].set()  # a newer manifest supersedes the download in progress
        self._wake.set()

    def _publish_refusals(self, count: int, last: str | None) -> None:
        """The same state, with the new refusal count (RefusalCounter's callback)."""
        self.status = self.status.model_copy(update={"refused_manifests": count, "last_refusal": last})
        self._publish_status()

    def _compatible(self, manifest: M) -> bool:
        """Check a signed instruction for this device; report it failed (once per push) if the
        device cannot follow it. Returns whether it may go into the book."""
        try:
            self._check(manifest)
            check_not_older(manifest, self._serving_version(), self.pipeline.is_current(manifest))
        except UpdateError as exc:
            if manifest.push_id not in self.outcomes:
                log.warning("cannot apply %s push %s: %s", self.kind, manifest.push_id, exc.reason)
                self._finish(manifest, "failed", followed=False)
                self._report(
                    "failed", reason=exc.reason, push_id=manifest.push_id, target_version=manifest.version
                )
            return False
        return True

    def _publish_status(self) -> None:
        self.connection.publish(self.status_topic, self.status.model_dump_json(), qos=1, retain=True)

    def _report(self, state: UpdateState, **fields: object) -> None:
        keep = {"target_version": self.status.target_version, "push_id": self.status.push_id}
        counts = {"refused_manifests": self.refusals.count, "last_refusal": self.refusals.last}
        self.status = self._make_status(state, **{**keep, **counts, **fields})
        log.info("%s status %s %s", self.kind, state, fields.get("reason") or fields.get("progress") or "")
        self._publish_status()

    # -- worker ---------------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait()
            self._wake.clear()
            manifest = self.book.effective()
            if self._stopping.is_set() or manifest is None or manifest.push_id in self.outcomes:
                continue
            self._handle(manifest)

    def _finish(self, manifest: M, outcome: str, *, followed: bool = True) -> None:
        """Record a push's outcome. `followed`: the device acted on it (applied, rolled back, or
        failed in the pipeline), so whatever was issued before it is a replay from now on."""
        self.outcomes[manifest.push_id] = outcome
        try:
            self.store.record_outcome(manifest.push_id, outcome)
            if followed:
                self.last = self.store.record_instruction(manifest.issued_at, manifest.push_id)
        except OSError as exc:  # a full or failing disk: this run knows; a restart asks again
            log.error(
                "cannot record %s push %s as %s in %s (%s); after a restart it is handled again",
                self.kind,
                manifest.push_id,
                outcome,
                self.store.root,
                exc,
            )

    def _handle(self, manifest: M) -> None:
        ids = {"push_id": manifest.push_id, "target_version": manifest.version}
        try:  # again: what serves and the last instruction may have moved since it arrived
            admit(manifest, self.audience, self.last)
            check_not_older(manifest, self._serving_version(), self.pipeline.is_current(manifest))
        except UpdateError as exc:
            log.warning("skipping %s push %s: %s", self.kind, manifest.push_id, exc.reason)
            return
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
            log.error("%s %s %s refused: %s", self.kind, manifest.name, manifest.version, exc.reason)
            self._finish(manifest, "failed")
            self._report("failed", reason=exc.reason)
            return
        except OSError as exc:
            # A full or failing disk (staging, install, pointer): what serves is unchanged. Not
            # recorded as an outcome, so a restart (with space freed) applies the push again.
            reason = f"storage error: {exc}"
            log.error("%s %s %s not applied: %s", self.kind, manifest.name, manifest.version, reason)
            self._report("failed", reason=reason)
            return
        finally:
            self._job = None
        if not applied:
            self._wake.set()  # superseded: look at the newest manifest
            return
        self._finish(manifest, "active")
        self._serving(manifest)
