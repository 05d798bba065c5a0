"""Build a model manifest at push time: chunk hashes, golden cases from the user's inputs
(golden_builder.py), an optional bsdiff delta. Signed later by the FleetManager, where the
signing key stays. Imports neither edge/ nor tools/: the `cloud` extra alone can push."""

from __future__ import annotations

import hashlib
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from edgecascade.cloud.artifacts import artifact_relpath, delta_file_name
from edgecascade.cloud.fleet.golden_builder import Case, golden_for, load_golden_inputs
from edgecascade.shared.errors import ModelError, UpdateError
from edgecascade.shared.manifest import (
    MANIFEST_SCHEMA,
    Blob,
    Delta,
    EscalationThreshold,
    Golden,
    Manifest,
)
from edgecascade.shared.model_card import ModelCard
from edgecascade.shared.mqtt import Topics
from edgecascade.shared.version import __version__

DEFAULT_CHUNK = 256 * 1024


@dataclass(frozen=True)
class Payload:
    """Bytes to deliver, the Blob describing them, and their path in the artifact folder."""

    blob: Blob
    data: bytes
    http_path: str


def make_blob(data: bytes, topic: str, chunk_size: int, url: str | None) -> Blob:
    chunks = [data[i : i + chunk_size] for i in range(0, len(data), chunk_size)]
    return Blob(
        sha256=hashlib.sha256(data).hexdigest(),
        size_bytes=len(data),
        chunk_size=chunk_size,
        chunk_sha256=[hashlib.sha256(c).hexdigest() for c in chunks],
        topic=topic,
        url=url,
    )


def _card_for(artifact: Path, data: bytes, name: str | None, version: str | None) -> ModelCard:
    """The card beside `artifact`, with the pushed name and version and the artifact's hash."""
    try:
        card = ModelCard.load_for(artifact)
    except ModelError as exc:
        raise UpdateError(str(exc)) from exc
    return card.model_copy(
        update={
            "name": name or card.name,
            "version": version or card.version,
            "sha256": hashlib.sha256(data).hexdigest(),
            "size_bytes": len(data),
        }
    )


def _url(base_url: str | None, path: str) -> str | None:
    return f"{base_url.rstrip('/')}/artifacts/{path}" if base_url else None


def _delta_payload(
    delta_base: Path,
    data: bytes,
    name: str,
    version: str,
    file_name: str,
    chunk_size: int,
    base_url: str | None,
    fleet: str,
) -> tuple[Delta, Payload]:
    """A bsdiff delta from `delta_base` (a pushed artifact with its card) to `data`."""
    import bsdiff4

    base_card = ModelCard.load_for(delta_base)
    base_bytes = delta_base.read_bytes()
    diff = bsdiff4.diff(base_bytes, data)
    tag = f"{version}-delta-{base_card.version}-{hashlib.sha256(diff).hexdigest()[:12]}"
    path = artifact_relpath(name, version, delta_file_name(file_name, base_card.version))
    blob = make_blob(diff, Topics(fleet).artifact_chunks(name, tag), chunk_size, _url(base_url, path))
    delta = Delta(
        base_version=base_card.version, base_sha256=hashlib.sha256(base_bytes).hexdigest(), blob=blob
    )
    return delta, Payload(blob, diff, path)


def _golden(
    artifact: Path, backend: str, golden: Path | list[Case] | None, tolerance: float
) -> Golden | None:
    if golden is None:
        return None
    cases = load_golden_inputs(golden) if isinstance(golden, Path) else golden
    return golden_for(artifact, backend, cases, tolerance)


def build_manifest(
    artifact: Path,
    *,
    fleet: str,
    target: str,
    name: str | None = None,
    version: str | None = None,
    route: str = "mqtt",
    base_url: str | None = None,
    chunk_size: int = DEFAULT_CHUNK,
    delta_base: Path | None = None,
    profiles: list[str] | None = None,
    min_agent_version: str = __version__,
    escalation: list[EscalationThreshold] | None = None,
    golden: Path | list[Case] | None = None,
    tolerance: float = 0.02,
) -> tuple[Manifest, list[Payload]]:
    """An unsigned manifest plus the payloads to publish (artifact, and delta when asked).
    The model card beside `artifact` is shipped inside the manifest, with name/version set.
    `golden`: the user's inputs (a .npz, a folder, or the cases themselves); the candidate's
    outputs for them are checked on the device within `tolerance`. None: load test only."""
    if route == "http" and not base_url:
        raise UpdateError("the http route needs the model repository's base URL (--base-url)")
    data = artifact.read_bytes()
    card = _card_for(artifact, data, name, version)
    full_path = artifact_relpath(card.name, card.version, artifact.name)
    # Chunk topics carry the hash too: a version pushed again with other bytes never mixes chunks.
    topic = Topics(fleet).artifact_chunks(card.name, f"{card.version}-{card.sha256[:12]}")
    full = make_blob(data, topic, chunk_size, _url(base_url, full_path))
    payloads = [Payload(full, data, full_path)]
    delta = None
    if delta_base is not None:
        delta, payload = _delta_payload(
            delta_base, data, card.name, card.version, artifact.name, chunk_size, base_url, fleet
        )
        payloads.append(payload)
    manifest = Manifest(
        schema_version=MANIFEST_SCHEMA,
        rollback_of=None,
        signature=None,
        fleet=fleet,
        name=card.name,
        version=card.version,
        backend=card.backend,
        file_name=artifact.name,
        card=card,
        min_agent_version=min_agent_version,
        profiles=profiles or [],
        escalation=escalation or [],
        golden=_golden(artifact, card.backend, golden, tolerance),
        route=route,
        artifact=full,
        delta=delta,
        target=target,
        push_id=uuid.uuid4().hex[:12],
        issued_at=time.time(),
        key_id="",
    )
    return manifest, payloads
