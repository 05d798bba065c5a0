"""Fetch a signed artifact (or its delta) into staging and verify it against the manifest.

Used by the model and lookup-table pipelines; transport-agnostic (ArtifactTransport) and resumable (a
partial file in staging is kept across stops and restarts)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from edgecascade.edge.updates.staging import StagedBlob
from edgecascade.edge.updates.store import Installed, sha256_file
from edgecascade.edge.updates.transports import ArtifactTransport
from edgecascade.shared.atomic_file import atomic_write
from edgecascade.shared.errors import UpdateError
from edgecascade.shared.manifest import Blob, Delta

log = logging.getLogger(__name__)

#: report(state, **fields): turned into the retained status message by the updater.
Report = Callable[..., None]


class Staging(Protocol):
    def staging_file(self, sha256: str) -> Path: ...

    def clear_staging(self, keep: str | None = None) -> None: ...


def fetch_verified(
    artifact: Blob,
    delta: Delta | None,
    base: Installed | None,
    *,
    staging: Staging,
    transport: ArtifactTransport,
    stop: threading.Event,
    report: Report,
    max_bytes: int,
) -> tuple[Path | None, int]:
    """(path of the verified artifact in staging, bytes received on the wire). The path is None
    if `stop` ended the download early. The delta is used only when `base` is its base (by
    version and hash). Raises UpdateError on a size/hash mismatch, a bad delta or a timeout."""
    use_delta = delta is not None and _delta_applies(delta, base)
    blob = delta.blob if (use_delta and delta is not None) else artifact
    if blob.size_bytes > max_bytes:
        raise UpdateError(f"download of {blob.size_bytes} bytes exceeds the limit of {max_bytes}")
    staging.clear_staging(keep=blob.sha256)
    path = staging.staging_file(blob.sha256)
    staged = StagedBlob(path, blob)
    before = staged.received_bytes
    on_progress = _progress_reporter(report)
    report("downloading", progress=round(staged.progress, 2), bytes_received=before)
    try:
        transport.fetch(staged, stop, on_progress)
    finally:
        staged.close()
    received = staged.received_bytes - before
    if staged.write_error is not None:
        raise staged.write_error  # the subscriber reports it as a storage error
    if not staged.done.is_set():
        return None, received  # stopped for a newer manifest; the partial file stays for a resume
    report("verifying", progress=1.0, bytes_received=blob.size_bytes)
    if use_delta and base is not None:
        path = _patch(path, base, staging.staging_file(artifact.sha256))
    if path.stat().st_size != artifact.size_bytes or sha256_file(path) != artifact.sha256:
        path.unlink(missing_ok=True)
        raise UpdateError("artifact size or SHA-256 does not match the signed manifest (tampered?)")
    return path, received


def _delta_applies(delta: Delta, base: Installed | None) -> bool:
    """Whether `base` is the installed file the delta was made from (by version and hash)."""
    return (
        base is not None
        and delta.base_version == base.version
        and base.path.is_file()
        and sha256_file(base.path) == delta.base_sha256
    )


def _progress_reporter(report: Report) -> Callable[[StagedBlob], None]:
    """A progress callback that reports every tenth of the way, and once when done."""
    last = -1.0

    def on_progress(s: StagedBlob) -> None:
        nonlocal last
        progress = round(s.progress, 2)
        if progress >= last + 0.1 or s.done.is_set():
            last = progress
            report("downloading", progress=progress, bytes_received=s.received_bytes)

    return on_progress


def _patch(delta_path: Path, base: Installed, out: Path) -> Path:
    import bsdiff4

    try:
        data = bsdiff4.patch(base.path.read_bytes(), delta_path.read_bytes())
    except (ValueError, RuntimeError) as exc:
        raise UpdateError(f"delta does not apply to version {base.version}: {exc}") from exc
    finally:
        delta_path.unlink(missing_ok=True)
    atomic_write(out, data)
    return out
