"""Build a model manifest at push time: chunk hashes, golden vectors from real held-out digits,
an optional bsdiff delta, then sign it. The signing key stays here, in the fleet manager."""

from __future__ import annotations

import hashlib
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgecascade.cloud.artifacts import artifact_relpath, delta_file_name
from edgecascade.shared.errors import ModelError, UpdateError
from edgecascade.shared.manifest import (
    MANIFEST_SCHEMA,
    Blob,
    Delta,
    EscalationThreshold,
    Golden,
    GoldenVector,
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


def golden_vectors(artifact: Path, count: int, tolerance: float) -> Golden:
    """Run the model on the first `count` real held-out digits; their outputs become the goldens."""
    from edgecascade.edge.local_model import LocalModel
    from edgecascade.shared.backends import BackendOptions
    from edgecascade.tools.datasets import load_split

    _, held = load_split()
    model = LocalModel.load(artifact, BackendOptions(warmup_runs=0))
    try:
        rows = held.features[:count]
        vectors = [
            GoldenVector(features=row.tolist(), expected=model.probabilities(row[None, :])[0].tolist())
            for row in rows.astype(np.float32)
        ]
    finally:
        model.close()
    return Golden(tolerance=tolerance, vectors=vectors)


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
    golden_count: int = 8,
    tolerance: float = 0.02,
) -> tuple[Manifest, list[Payload]]:
    """An unsigned manifest plus the payloads to publish (artifact, and delta when asked).
    The model card beside `artifact` is shipped inside the manifest, with name/version set."""
    try:
        card = ModelCard.load_for(artifact)
    except ModelError as exc:
        raise UpdateError(str(exc)) from exc
    data = artifact.read_bytes()
    name, version = name or card.name, version or card.version
    card = card.model_copy(
        update={
            "name": name,
            "version": version,
            "sha256": hashlib.sha256(data).hexdigest(),
            "size_bytes": len(data),
        }
    )
    if route == "http" and not base_url:
        raise UpdateError("the http route needs the model repository's base URL (--base-url)")
    topics = Topics(fleet)
    full_path = artifact_relpath(name, version, artifact.name)
    full_url = f"{base_url.rstrip('/')}/artifacts/{full_path}" if base_url else None
    # Chunk topics carry the hash too: a version pushed again with other bytes never mixes chunks.
    sha = hashlib.sha256(data).hexdigest()
    full = make_blob(data, topics.artifact_chunks(name, f"{version}-{sha[:12]}"), chunk_size, full_url)
    payloads = [Payload(full, data, full_path)]
    delta = None
    if delta_base is not None:
        import bsdiff4

        base_card = ModelCard.load_for(delta_base)
        base_bytes = delta_base.read_bytes()
        diff = bsdiff4.diff(base_bytes, data)
        tag = f"{version}-delta-{base_card.version}-{hashlib.sha256(diff).hexdigest()[:12]}"
        delta_path = artifact_relpath(name, version, delta_file_name(artifact.name, base_card.version))
        delta_url = f"{base_url.rstrip('/')}/artifacts/{delta_path}" if base_url else None
        blob = make_blob(diff, topics.artifact_chunks(name, tag), chunk_size, delta_url)
        delta = Delta(
            base_version=base_card.version, base_sha256=hashlib.sha256(base_bytes).hexdigest(), blob=blob
        )
        payloads.append(Payload(blob, diff, delta_path))
    manifest = Manifest(
        schema_version=MANIFEST_SCHEMA,
        rollback_of=None,
        signature=None,
        fleet=fleet,
        name=name,
        version=version,
        backend=card.backend,
        file_name=artifact.name,
        card=card,
        min_agent_version=min_agent_version,
        profiles=profiles or [],
        escalation=escalation or [],
        golden=golden_vectors(artifact, golden_count, tolerance),
        route=route,
        artifact=full,
        delta=delta,
        target=target,
        push_id=uuid.uuid4().hex[:12],
        issued_at=time.time(),
        key_id="",
    )
    return manifest, payloads
