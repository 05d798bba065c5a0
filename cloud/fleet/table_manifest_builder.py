"""Build a lookup-table manifest at push time from the table's own header: chunk hashes, an
optional bsdiff delta against an earlier table file. Signed later by the FleetManager."""

from __future__ import annotations

import hashlib
import time
import uuid
from pathlib import Path

from edgecascade.cloud.artifacts import artifact_relpath, delta_file_name
from edgecascade.cloud.fleet.manifest_builder import DEFAULT_CHUNK, Payload, _url, make_blob
from edgecascade.shared.errors import StorageError, UpdateError
from edgecascade.shared.lookup import TableFile, TableMeta
from edgecascade.shared.manifest import MANIFEST_SCHEMA, Delta
from edgecascade.shared.mqtt import Topics
from edgecascade.shared.table_manifest import TableManifest
from edgecascade.shared.version import __version__


def table_http_name(name: str) -> str:
    """The name part of a table's path under /artifacts (kept apart from model names)."""
    return f"table-{name}"


def read_meta(path: Path) -> TableMeta:
    """The header of a table file, fully validated (checksum included) at its own encoding."""
    from edgecascade.shared.lookup.table_file import read_header

    try:
        meta, _ = read_header(path)
        TableFile.open(path, encoding_version=meta.encoding_version).close()
    except StorageError as exc:
        raise UpdateError(f"not a pushable table: {exc}") from exc
    return meta


def build_table_manifest(
    table: Path,
    *,
    fleet: str,
    target: str,
    version: str | None = None,
    route: str = "mqtt",
    base_url: str | None = None,
    chunk_size: int = DEFAULT_CHUNK,
    delta_base: Path | None = None,
    profiles: list[str] | None = None,
    min_agent_version: str = __version__,
    model: str | None = None,
) -> tuple[TableManifest, list[Payload]]:
    """An unsigned table manifest plus the payloads to publish. `version`, if given, must be the
    header's: devices report the header's version in every answer, so the two cannot differ.
    `model` names the device model whose table it is (None: each device's default)."""
    meta = read_meta(table)
    _check_request(table, meta, version, route, base_url)
    data = table.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    topics = Topics(fleet)
    http_name = table_http_name(meta.name)
    full_path = artifact_relpath(http_name, meta.version, table.name)
    # Chunk topics carry the hash too: a version pushed again with other bytes never mixes chunks.
    full_topic = topics.table_chunks(meta.name, f"{meta.version}-{sha[:12]}")
    full = make_blob(data, full_topic, chunk_size, _url(base_url, full_path))
    payloads = [Payload(full, data, full_path)]
    delta = None
    if delta_base is not None:
        delta, payload = _delta_payload(delta_base, data, meta, table.name, topics, chunk_size, base_url)
        payloads.append(payload)
    manifest = TableManifest(
        schema_version=MANIFEST_SCHEMA,
        kind="table",
        fleet=fleet,
        name=meta.name,
        model=model,
        version=meta.version,
        file_name=table.name,
        cloud_model=meta.cloud_model,
        cloud_model_version=meta.cloud_model_version,
        encoding_version=meta.encoding_version,
        key_scheme=meta.key_scheme,
        entries=meta.entries,
        min_agent_version=min_agent_version,
        profiles=profiles or [],
        route=route,
        artifact=full,
        delta=delta,
        target=target,
        push_id=uuid.uuid4().hex[:12],
        rollback_of=None,
        issued_at=time.time(),
        key_id="",
        signature=None,
    )
    return manifest, payloads


def _check_request(
    table: Path, meta: TableMeta, version: str | None, route: str, base_url: str | None
) -> None:
    if version is not None and version != meta.version:
        raise UpdateError(
            f"{table} holds table version {meta.version!r}, not {version!r}; rebuild it with "
            f"`edgecascade models build-table --version {version}`"
        )
    if route == "http" and not base_url:
        raise UpdateError("the http route needs the cloud's base URL (--base-url)")


def _delta_payload(
    delta_base: Path,
    data: bytes,
    meta: TableMeta,
    file_name: str,
    topics: Topics,
    chunk_size: int,
    base_url: str | None,
) -> tuple[Delta, Payload]:
    """A bsdiff delta from `delta_base` (an earlier table file) to `data`."""
    import bsdiff4

    base_meta = read_meta(delta_base)
    base_bytes = delta_base.read_bytes()
    diff = bsdiff4.diff(base_bytes, data)
    tag = f"{meta.version}-delta-{base_meta.version}-{hashlib.sha256(diff).hexdigest()[:12]}"
    path = artifact_relpath(
        table_http_name(meta.name), meta.version, delta_file_name(file_name, base_meta.version)
    )
    blob = make_blob(diff, topics.table_chunks(meta.name, tag), chunk_size, _url(base_url, path))
    delta = Delta(
        base_version=base_meta.version, base_sha256=hashlib.sha256(base_bytes).hexdigest(), blob=blob
    )
    return delta, Payload(blob, diff, path)
