"""Which manifest applies to this device, and whether it may be applied at all (pure logic).

Two kinds of refusal: `admit` refuses what is no instruction for this device (garbage, forged,
replayed, signed for someone else), which is counted and logged but never changes the device's
state; `check_*` refuse a real, signed instruction the device cannot follow, reported as failed."""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from typing import Generic, TypeVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from edgecascade.edge.config.profile import DeviceProfile
from edgecascade.edge.updates.store import Instruction
from edgecascade.shared.errors import UpdateError
from edgecascade.shared.manifest import Manifest, target_covers
from edgecascade.shared.table_manifest import TableManifest

M = TypeVar("M", Manifest, TableManifest)


def version_tuple(version: str) -> tuple[int, ...]:
    """'0.10.2' -> (0, 10, 2); a pre-release suffix ('1.2.0rc1') is ignored."""
    parts = []
    for part in version.split("."):
        match = re.match(r"\d+", part)
        if match is None:
            break
        parts.append(int(match.group()))
    return tuple(parts)


@dataclass(frozen=True)
class Audience:
    """Who this device is, for the signed checks: fleet, id, groups, the trusted key."""

    fleet: str
    device: str
    groups: tuple[str, ...]
    public_key: Ed25519PublicKey

    @classmethod
    def of(cls, profile: DeviceProfile, public_key: Ed25519PublicKey) -> Audience:
        return cls(profile.fleet, profile.device_id, tuple(profile.groups), public_key)


def admit(manifest: M, audience: Audience, last: Instruction) -> None:
    """Raise UpdateError if `manifest` is no instruction for this device: unsigned or forged,
    another fleet, a signed target that does not cover it (wherever it was published), or
    issued before the instruction it finished last (a replay). Such manifests are only counted
    and logged: whoever can write a manifest topic must not be able to change the device's state."""
    manifest.verify(audience.public_key)  # first: nothing unsigned is trusted, not even its fields
    if manifest.fleet != audience.fleet:
        raise UpdateError(f"manifest is for fleet {manifest.fleet!r}, device is in {audience.fleet!r}")
    if not target_covers(manifest.target, audience.device, audience.groups):
        groups = ", ".join(audience.groups) or "none"
        raise UpdateError(
            f"signed for {manifest.target}, which does not cover device {audience.device} (groups: {groups})"
        )
    replayed = manifest.issued_at < last.issued_at or (
        manifest.issued_at == last.issued_at and manifest.push_id != last.push_id
    )
    if replayed:
        raise UpdateError(
            f"push {manifest.push_id} was issued before push {last.push_id}, the last one this device "
            "finished: a replay"
        )


def check_not_older(manifest: M, current_version: str | None, is_current: bool) -> None:
    """Raise UpdateError for a version at or below the serving one, unless the signed manifest
    is a rollback (Uptane/Mender rollback protection). Versions compare numerically; where
    either is not a dotted number (table versions such as t2) only the replay check applies."""
    if is_current or manifest.rollback_of or current_version is None:
        return
    new, old = version_tuple(manifest.version), version_tuple(current_version)
    if new and old and new <= old:
        raise UpdateError(
            f"version {manifest.version} is not newer than the serving {current_version}; "
            "lowering a version needs a rollback push"
        )


def check_model_name(manifest: Manifest, model: str, served: list[str]) -> None:
    """Raise UpdateError unless a signed manifest is for `model`, the one whose topics it came
    on. Another name is no instruction for this model: refused (counted), like garbage."""
    if manifest.name == model:
        return
    if manifest.name in served:
        raise UpdateError(f"manifest for model {manifest.name!r} came on the topics of {model!r}")
    raise UpdateError(f"manifest is for model {manifest.name!r}; this device serves {', '.join(served)}")


def check_manifest(manifest: Manifest, profile: DeviceProfile, agent_version: str, max_bytes: int) -> None:
    """Raise UpdateError with the reason if this device cannot apply an admitted model manifest
    for one of its models (reported to the fleet as failed: it is a real instruction the device
    cannot follow)."""
    from edgecascade.edge.updates.transports.registry import check_route

    _check_common(manifest, profile, agent_version, max_bytes, "artifact")
    check_route(manifest.route)
    if manifest.card.name != manifest.name or manifest.card.version != manifest.version:
        raise UpdateError("model card does not match the manifest's name and version")


def check_table_manifest(
    manifest: TableManifest, profile: DeviceProfile, agent_version: str, max_bytes: int, encoding_version: int
) -> None:
    """Raise UpdateError with the reason if this device cannot apply an admitted table manifest
    (before any download; the table file itself is validated again when it is tested)."""
    from edgecascade.edge.updates.transports.registry import check_route

    _check_common(manifest, profile, agent_version, max_bytes, "table")
    check_route(manifest.route)
    if manifest.encoding_version != encoding_version:
        raise UpdateError(
            f"table built for feature-encoding version {manifest.encoding_version}, "
            f"this device encodes with version {encoding_version}"
        )


def _check_common(manifest: M, profile: DeviceProfile, agent_version: str, max_bytes: int, what: str) -> None:
    if version_tuple(agent_version) < version_tuple(manifest.min_agent_version):
        raise UpdateError(
            f"needs agent >= {manifest.min_agent_version}, this agent is {agent_version}; update the agent"
        )
    if manifest.profiles and profile.profile not in manifest.profiles:
        raise UpdateError(
            f"incompatible profile {profile.profile!r}; manifest supports {', '.join(manifest.profiles)}"
        )
    if manifest.artifact.size_bytes > max_bytes:
        raise UpdateError(f"{what} of {manifest.artifact.size_bytes} bytes exceeds the limit of {max_bytes}")


class ManifestBook(Generic[M]):
    """The admitted manifests received per topic level. The newest signed instruction wins
    (`issued_at`), so a fleet-wide push after a device-targeted one reaches the device, also
    after a restart; on a tie the more specific level wins (device > group > all). An empty
    retained message clears a level."""

    def __init__(self, device_topic: str, group_topics: list[str], all_topic: str) -> None:
        self.device_topic = device_topic
        self.group_topics = set(group_topics)
        self.all_topic = all_topic
        self._by_topic: dict[str, M] = {}
        self._lock = threading.Lock()

    def put(self, topic: str, manifest: M | None) -> None:
        with self._lock:
            if manifest is None:
                self._by_topic.pop(topic, None)
            else:
                self._by_topic[topic] = manifest

    def effective(self) -> M | None:
        with self._lock:
            held = list(self._by_topic.items())
        if not held:
            return None
        return max(held, key=lambda item: (item[1].issued_at, self._specificity(item[0])))[1]

    def _specificity(self, topic: str) -> int:
        return 2 if topic == self.device_topic else 1 if topic in self.group_topics else 0
