"""The fleet manager: sign and publish manifests and artifact chunks, canaries, promote, rollback.

Every push is recorded in `<state_dir>/pushes.json` (and its signed manifest in
`<state_dir>/manifests/`), so `promote` and `rollback` work from a later command. These files and
the kept artifacts (`<state_dir>/blobs/<sha256>`) are written whole or not at all: a command
killed mid-write never leaves a half record that breaks every later command, nor a half blob
under a name that claims its hash. Everything published in this session is re-published after
a reconnect, because a broker restarted without persistence forgets retained messages."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edgecascade.cloud.artifacts import artifact_relpath
from edgecascade.cloud.fleet.manifest_builder import Payload
from edgecascade.cloud.fleet.status_board import StatusBoard
from edgecascade.cloud.fleet.table_manifest_builder import table_http_name
from edgecascade.shared.atomic_file import atomic_write
from edgecascade.shared.errors import UpdateError
from edgecascade.shared.manifest import Manifest
from edgecascade.shared.mqtt import MqttConnection, Topics
from edgecascade.shared.table_manifest import TableManifest
from edgecascade.shared.topic_segments import check_model_name

log = logging.getLogger(__name__)


@dataclass
class PushRecord:
    push_id: str
    name: str
    version: str
    target: str
    canary_devices: list[str] = field(default_factory=list)
    promoted: bool = True
    rolled_back: bool = False
    issued_at: float = 0.0
    kind: str = "model"  # or "table"; records written before tables existed are models
    model: str | None = None  # a table push: the device model it is for (None: the default)


AnyManifest = Manifest | TableManifest


def _kept_blob(path: Path, sha256: str) -> bytes | None:
    """The kept artifact's bytes when they match their hash; None when absent or damaged."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    return data if hashlib.sha256(data).hexdigest() == sha256 else None


def _table_model(manifest: AnyManifest) -> str | None:
    """The device model a table manifest is for (None: the default; model manifests: None)."""
    return manifest.model if isinstance(manifest, TableManifest) else None


def _topics_model(manifest: AnyManifest) -> str | None:
    """The model whose topics carry `manifest`: a model manifest's own name, a table's model."""
    return manifest.name if manifest.kind == "model" else _table_model(manifest)


def _record_model(record: PushRecord) -> str | None:
    """_topics_model for a push already recorded."""
    return record.name if record.kind == "model" else record.model


class FleetManager:
    """Signs and publishes pushes. With `artifacts_dir` (the folder the cloud's /artifacts route
    serves, see cloud/artifacts.py) it can push over the http route: the files are placed there
    before the manifest is published, instead of being sent as MQTT chunks."""

    def __init__(
        self,
        connection: MqttConnection,
        fleet: str,
        key: Ed25519PrivateKey,
        state_dir: Path,
        *,
        artifacts_dir: Path | None = None,
    ) -> None:
        self.connection = connection
        self.artifacts_dir = artifacts_dir
        self.topics = Topics(fleet)
        self.key = key
        self.state_dir = state_dir
        (state_dir / "manifests").mkdir(parents=True, exist_ok=True)
        self.board = StatusBoard(connection, self.topics)
        self._published: dict[str, bytes] = {}
        self._lock = threading.Lock()
        connection.on_connect_hooks.append(self._republish)
        self.board.attach()

    # -- records -----------------------------------------------------------------------------
    def pushes(self) -> list[PushRecord]:
        path = self.state_dir / "pushes.json"
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return []
        except OSError as exc:  # a folder in its place, unreadable
            raise UpdateError(f"{path}: cannot read the push records: {exc.strerror or exc}") from None
        try:
            rows = json.loads(raw)
            return [PushRecord(**r) for r in rows]
        except (ValueError, TypeError, RecursionError) as exc:
            # Edited by hand or left by a release that wrote it in place: say which file, and
            # leave it for the user to repair (it holds what rollback needs).
            raise UpdateError(
                f"{path}: not a list of push records ({type(exc).__name__}); repair it or move it "
                "aside (promote and rollback then know no earlier push)"
            ) from None

    def _save(self, records: list[PushRecord]) -> None:
        body = json.dumps([asdict(r) for r in records], indent=1).encode()
        atomic_write(self.state_dir / "pushes.json", body)

    def manifest_of(self, push_id: str) -> AnyManifest:
        path = self.state_dir / "manifests" / f"{push_id}.json"
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise UpdateError(
                f"{path}: cannot read push {push_id}'s manifest: {exc.strerror or exc}"
            ) from None
        try:
            head = json.loads(raw)
            kind = TableManifest if isinstance(head, dict) and head.get("kind") == "table" else Manifest
            return kind.model_validate_json(raw)
        except (ValueError, RecursionError) as exc:  # pydantic's ValidationError is a ValueError
            raise UpdateError(f"{path}: not a signed manifest ({type(exc).__name__})") from None

    # -- publishing -------------------------------------------------------------------------
    def publish_retained(self, topic: str, payload: bytes) -> None:
        with self._lock:
            if payload:
                self._published[topic] = payload
            else:
                self._published.pop(topic, None)
        self.connection.publish(topic, payload, qos=1, retain=True)

    def _republish(self) -> None:
        with self._lock:
            items = list(self._published.items())
        if items:
            log.info("reconnected: re-publishing %d retained messages", len(items))
        for topic, payload in items:
            self.connection.publish(topic, payload, qos=1, retain=True)

    def _keep(self, payloads: list[Payload]) -> None:
        blobs = self.state_dir / "blobs"
        blobs.mkdir(exist_ok=True)
        for payload in payloads:
            kept = blobs / payload.blob.sha256
            # Kept so a rollback can re-send it to devices that lack it; one found damaged (an
            # older release wrote in place) is written again.
            if _kept_blob(kept, payload.blob.sha256) is None:
                atomic_write(kept, payload.data)

    def place_payloads(self, payloads: list[Payload]) -> None:
        """The http route: write the files where the cloud's /artifacts route serves them."""
        from edgecascade.cloud.artifacts import place_artifact

        if self.artifacts_dir is None:
            raise UpdateError(
                "the http route needs the folder the cloud serves /artifacts from (--artifacts-dir)"
            )
        self._keep(payloads)
        for payload in payloads:
            path = place_artifact(self.artifacts_dir, payload.http_path, payload.data)
            log.info("placed %s (%d bytes) for %s", path, len(payload.data), payload.blob.url)

    def publish_payloads(self, payloads: list[Payload]) -> None:
        """The mqtt route: every chunk as a retained QoS 1 message."""
        self._keep(payloads)
        for payload in payloads:
            blob = payload.blob
            for i in range(len(blob.chunk_sha256)):
                start, end = blob.chunk_bounds(i)
                self.publish_retained(f"{blob.topic}/{i}", payload.data[start:end])

    def topic_for(self, target: str, kind: str = "model", model: str | None = None) -> str:
        """The retained manifest topic for `target`; tables have their own, apart from models,
        and per device model (`model`, None: the default lookup model's)."""
        level, _, value = target.partition(":")
        t = self.topics
        if kind == "table":
            if level == "device" and value:
                return t.table_manifest_device(value, model)
            if level == "group" and value:
                return t.table_manifest_group(value, model)
            if target == "all":
                return t.table_manifest_all(model)
        else:
            if model is None:
                raise UpdateError("a model manifest's topics need its model name")
            try:
                check_model_name(model)
            except ValueError as exc:
                raise UpdateError(f"model name {model!r} {exc}") from None
            if level == "device" and value:
                return t.manifest_device(model, value)
            if level == "group" and value:
                return t.manifest_group(model, value)
            if target == "all":
                return t.manifest_all(model)
        raise UpdateError(f"target must be device:ID, group:G or all, not {target!r}")

    def _issue_time(self) -> float:
        """Now, but always after every earlier push: devices let the newest signed instruction
        win and refuse older ones, so a clock step back here must not make a push look old."""
        latest = max((r.issued_at for r in self.pushes()), default=0.0)
        return max(time.time(), latest + 0.001)

    def _sign(self, manifest: AnyManifest) -> AnyManifest:
        return manifest.model_copy(update={"issued_at": self._issue_time()}).signed(self.key)

    def _supersede(self, signed: AnyManifest, records: list[PushRecord]) -> None:
        """Clear the retained manifests of earlier pushes at levels the new target covers
        (device and group levels under `all`, device levels of a group's members), so no older
        instruction lingers where devices read. Devices would let the newer one win anyway."""
        model = _topics_model(signed)
        new_topic = self.topic_for(signed.target, signed.kind, model)
        members = set(self.board.devices_in(signed.target))
        stale: set[str] = set()
        for record in records:
            if record.kind != signed.kind or _record_model(record) != model:
                continue
            for target in (record.target, *(f"device:{d}" for d in record.canary_devices)):
                level, _, value = target.partition(":")
                covered = signed.target == "all" or (level == "device" and value in members)
                if covered and target != "all":
                    stale.add(self.topic_for(target, signed.kind, model))
        for topic in sorted(stale - {new_topic}):
            log.info("clearing %s manifest %s (superseded by push %s)", signed.kind, topic, signed.push_id)
            self.publish_retained(topic, b"")

    def push(
        self, manifest: AnyManifest, payloads: list[Payload], canary_percent: float | None = None
    ) -> tuple[AnyManifest, list[str]]:
        """Sign and publish. Returns the signed manifest and the devices it was sent to (for
        group/all targets: the devices known from their status; a canary gets only a share).
        A push that is not a canary clears the older manifests its target covers."""
        signed = self._sign(manifest)
        kind, model = signed.kind, _topics_model(signed)
        self.topic_for(signed.target, kind, model)  # validate before publishing anything
        atomic_write(
            self.state_dir / "manifests" / f"{signed.push_id}.json", signed.model_dump_json().encode()
        )
        # The bytes are in place before the manifest that points devices at them.
        if signed.route == "http":
            self.place_payloads(payloads)
        else:
            self.publish_payloads(payloads)
        devices = self.board.devices_in(signed.target, signed.name if kind == "model" else None)
        record = PushRecord(
            signed.push_id,
            signed.name,
            signed.version,
            signed.target,
            issued_at=signed.issued_at,
            kind=kind,
            model=_table_model(signed),
        )
        body = signed.model_dump_json().encode()
        if canary_percent is not None and not signed.target.startswith("device:"):
            count = max(1, math.ceil(len(devices) * canary_percent / 100.0)) if devices else 0
            record.canary_devices = devices[:count]
            record.promoted = False
            for device in record.canary_devices:
                self.publish_retained(self.topic_for(f"device:{device}", kind, model), body)
            devices = record.canary_devices
        else:
            self.publish_retained(self.topic_for(signed.target, kind, model), body)
            self._supersede(signed, self.pushes())
        self._save([*self.pushes(), record])
        log.info("pushed %s %s %s to %s: %s", kind, signed.name, signed.version, signed.target, devices)
        return signed, devices

    def promote(self, push_id: str | None = None) -> tuple[PushRecord, list[str]]:
        """Widen a canary to its whole target; clears the canaries' device-level manifests."""
        records = self.pushes()
        canaries = [r for r in records if not r.promoted and not r.rolled_back]
        if push_id:
            record = next((r for r in canaries if r.push_id == push_id), None)
        else:
            record = canaries[-1] if canaries else None
        if record is None:
            raise UpdateError(
                "no canary push waiting for promotion" + (f" with id {push_id}" if push_id else "")
            )
        # Signed again, newer than anything before it, so it wins on every device of the target.
        signed = self._sign(self.manifest_of(record.push_id))
        atomic_write(
            self.state_dir / "manifests" / f"{signed.push_id}.json", signed.model_dump_json().encode()
        )
        topic = self.topic_for(record.target, record.kind, _record_model(record))
        self.publish_retained(topic, signed.model_dump_json().encode())
        self._supersede(signed, [r for r in records if r.push_id != record.push_id])
        for device in record.canary_devices:
            self.publish_retained(self.topic_for(f"device:{device}", record.kind, _record_model(record)), b"")
        record.promoted = True
        record.issued_at = signed.issued_at
        self._save(records)
        return record, self.board.devices_in(record.target, record.name if record.kind == "model" else None)

    def rollback(
        self, name: str, target: str, kind: str = "model", *, model: str | None = None
    ) -> tuple[AnyManifest, list[str]]:
        """Re-sign the previous version (model or table) pushed to `target` as a new push;
        devices keep the old version on disk, so they swap back without a download. `model`:
        a table's device model, as its pushes named it (two models' tables are apart)."""
        records = [
            r
            for r in self.pushes()
            if r.name == name
            and r.target == target
            and r.kind == kind
            and r.model == model
            and not r.rolled_back
        ]
        if len(records) < 2:
            what = "table push" if kind == "table" else "push"
            raise UpdateError(f"no earlier {what} of {name} to {target} to roll back to")
        bad, good = records[-1], records[-2]
        base = self.manifest_of(good.push_id)
        manifest = base.model_copy(
            update={
                "push_id": uuid.uuid4().hex[:12],
                "rollback_of": bad.version,
                "issued_at": time.time(),
                "signature": None,
            }
        )
        all_records = self.pushes()
        for r in all_records:
            if r.push_id == bad.push_id:
                r.rolled_back = True
        self._save(all_records)
        for device in bad.canary_devices:
            self.publish_retained(self.topic_for(f"device:{device}", kind, _record_model(bad)), b"")
        kept = self.state_dir / "blobs" / base.artifact.sha256
        http_name = table_http_name(base.name) if kind == "table" else base.name
        rel = artifact_relpath(http_name, base.version, base.file_name)
        data = _kept_blob(kept, base.artifact.sha256)
        if data is None:
            # Devices that still hold the version swap back all the same; one that lacks it
            # cannot fetch it, and says so in its status.
            log.warning(
                "rollback of %s: no intact copy of %s %s in %s; devices without it on disk cannot swap back",
                name,
                base.name,
                base.version,
                kept.parent,
            )
        payloads = [Payload(base.artifact, data, rel)] if data is not None else []
        signed, devices = self.push(manifest, payloads)
        if bad.canary_devices and not bad.promoted:
            devices = sorted(set(devices) | set(bad.canary_devices))
        return signed, devices
