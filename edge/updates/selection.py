"""Which manifest applies to this device, and whether it may be applied at all (pure logic)."""

from __future__ import annotations

import re
import threading
from typing import Generic, TypeVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from edgecascade.edge.config.profile import DeviceProfile
from edgecascade.shared.errors import UpdateError
from edgecascade.shared.manifest import Manifest
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


def check_manifest(
    manifest: Manifest,
    profile: DeviceProfile,
    public_key: Ed25519PublicKey,
    agent_version: str,
    max_bytes: int,
) -> None:
    """Raise UpdateError with the reason if this device must refuse the manifest."""
    manifest.verify(public_key)  # first: nothing unsigned is trusted, not even its fields
    if manifest.fleet != profile.fleet:
        raise UpdateError(f"manifest is for fleet {manifest.fleet!r}, device is in {profile.fleet!r}")
    if manifest.name != profile.model.name:
        raise UpdateError(f"manifest is for model {manifest.name!r}, device serves {profile.model.name!r}")
    if version_tuple(agent_version) < version_tuple(manifest.min_agent_version):
        raise UpdateError(
            f"needs agent >= {manifest.min_agent_version}, this agent is {agent_version}; update the agent"
        )
    if manifest.profiles and profile.profile not in manifest.profiles:
        raise UpdateError(
            f"incompatible profile {profile.profile!r}; manifest supports {', '.join(manifest.profiles)}"
        )
    if manifest.artifact.size_bytes > max_bytes:
        raise UpdateError(
            f"artifact of {manifest.artifact.size_bytes} bytes exceeds the limit of {max_bytes}"
        )
    if manifest.card.name != manifest.name or manifest.card.version != manifest.version:
        raise UpdateError("model card does not match the manifest's name and version")


def check_table_manifest(
    manifest: TableManifest,
    profile: DeviceProfile,
    public_key: Ed25519PublicKey,
    agent_version: str,
    max_bytes: int,
    encoding_version: int,
) -> None:
    """Raise UpdateError with the reason if this device must refuse the table manifest (before
    any download; the table file itself is validated again when it is tested)."""
    manifest.verify(public_key)
    if manifest.fleet != profile.fleet:
        raise UpdateError(f"manifest is for fleet {manifest.fleet!r}, device is in {profile.fleet!r}")
    if version_tuple(agent_version) < version_tuple(manifest.min_agent_version):
        raise UpdateError(
            f"needs agent >= {manifest.min_agent_version}, this agent is {agent_version}; update the agent"
        )
    if manifest.profiles and profile.profile not in manifest.profiles:
        raise UpdateError(
            f"incompatible profile {profile.profile!r}; manifest supports {', '.join(manifest.profiles)}"
        )
    if manifest.encoding_version != encoding_version:
        raise UpdateError(
            f"table built for feature-encoding version {manifest.encoding_version}, "
            f"this device encodes with version {encoding_version}"
        )
    if manifest.artifact.size_bytes > max_bytes:
        raise UpdateError(f"table of {manifest.artifact.size_bytes} bytes exceeds the limit of {max_bytes}")


class ManifestBook(Generic[M]):
    """The valid manifests received per topic level; the most specific wins:
    device > group (newest if several groups) > all. An empty retained message clears a level."""

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
            if self.device_topic in self._by_topic:
                return self._by_topic[self.device_topic]
            groups = [m for t, m in self._by_topic.items() if t in self.group_topics]
            if groups:
                return max(groups, key=lambda m: m.issued_at)
            return self._by_topic.get(self.all_topic)
