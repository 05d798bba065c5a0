"""The model repository's artifact route for the HTTP(S) update route.

    GET/HEAD /artifacts/<name>/<version>/<file>        the full artifact
    GET/HEAD /artifacts/<name>/<version>/<file>.from-<base>.bsdiff   a delta against <base>

served from a folder the fleet manager fills (`place_artifact`). Single `Range: bytes=a-b`,
`bytes=a-` and `bytes=-n` requests get 206 with Content-Range, so a device resumes a cut
download where it stopped; a range past the end gets 416; a malformed or multi-range header is
ignored (200, the whole file), as RFC 9110 allows. The ETag is the file's SHA-256, so a device
can tell that the server holds the bytes its signed manifest names. Path parts are plain names
(no dot-prefixed parts, no separators) and must resolve inside the folder: no traversal.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from edgecascade.shared.atomic_file import atomic_write

log = logging.getLogger(__name__)

ROUTE = "/artifacts/{name}/{version}/{file}"
_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,199}$")
_RANGE = re.compile(r"^bytes=([0-9]*)-([0-9]*)$")
_BLOCK = 64 * 1024


def artifact_relpath(name: str, version: str, file_name: str) -> str:
    """Where an artifact lives under the folder (and after `/artifacts/` in its URL)."""
    return f"{name}/{version}/{file_name}"


def delta_file_name(file_name: str, base_version: str) -> str:
    return f"{file_name}.from-{base_version}.bsdiff"


def place_artifact(root: Path, relpath: str, data: bytes) -> Path:
    """Write `data` at `root/relpath` atomically (shared/atomic_file.py): a device never
    reads a half-written artifact. Raises ValueError for a path that is not three plain names."""
    parts = relpath.split("/")
    if len(parts) != 3 or not all(_PART.match(p) for p in parts):
        raise ValueError(f"not an artifact path (name/version/file of plain names): {relpath!r}")
    path = root.joinpath(*parts)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, data)
    return path


@dataclass(frozen=True)
class Served:
    """One answered request: the file (relative path), status, and byte range [start, end)."""

    path: str
    method: str
    status: int
    start: int
    end: int


class ServedLog:
    """The most recent requests the route answered and the body bytes it sent (for metrics,
    operators and tests: e.g. to see that a resumed download asked only for what was missing)."""

    def __init__(self, keep: int = 10_000) -> None:
        self._entries: deque[Served] = deque(maxlen=keep)
        self._lock = threading.Lock()
        self.bytes_sent = 0

    def record(self, entry: Served) -> None:
        with self._lock:
            self._entries.append(entry)

    def add_bytes(self, count: int) -> None:
        with self._lock:
            self.bytes_sent += count

    def entries(self, path: str | None = None) -> list[Served]:
        with self._lock:
            return [e for e in self._entries if path is None or e.path == path]


class RangeNotSatisfiable(ValueError):
    """The Range header is well formed but starts past the end of the file (HTTP 416)."""


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The [start, end) to send for a Range header, or None to send the whole file (no header,
    malformed, or several ranges). Raises RangeNotSatisfiable when nothing of it exists."""
    if not header:
        return None
    match = _RANGE.match(header.strip())
    if match is None:
        return None
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:  # suffix: the last n bytes
        count = _position(last, size)
        if count == 0 or size == 0:
            raise RangeNotSatisfiable(header)
        return max(0, size - count), size
    start = _position(first, size)
    end = _position(last, size) + 1 if last else size
    if last and end <= start:
        return None  # invalid (b < a): ignored
    if start >= size:
        raise RangeNotSatisfiable(header)
    return start, min(end, size)


def _position(digits: str, size: int) -> int:
    """A byte position of a Range header, capped just past the file's end: a range starting
    past the end or running beyond it means the same whatever the number, and int() refuses
    numbers of more than 4,300 digits (a client may send any)."""
    digits = digits.lstrip("0") or "0"
    if len(digits) > len(str(size)):
        return size + 1
    return min(int(digits), size + 1)


class _Hashes:
    """SHA-256 per file, cached by (inode, size, mtime) so a 20 MB artifact is hashed once."""

    def __init__(self) -> None:
        self._cache: dict[tuple[int, int, int, int], str] = {}
        self._lock = threading.Lock()

    def of(self, fd: int, st: os.stat_result) -> str:
        key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        with self._lock:
            found = self._cache.get(key)
        if found is not None:
            return found
        digest = hashlib.sha256()
        offset = 0
        while block := os.pread(fd, 1 << 20, offset):
            digest.update(block)
            offset += len(block)
        value = digest.hexdigest()
        with self._lock:
            if len(self._cache) > 1024:
                self._cache.clear()
            self._cache[key] = value
        return value


def _resolve(root: Path, name: str, version: str, file_name: str) -> Path | None:
    if not all(_PART.match(p) for p in (name, version, file_name)):
        return None
    base = root.resolve()
    path = (base / name / version / file_name).resolve()
    if not path.is_relative_to(base) or not path.is_file():
        return None  # a symlink out of the folder counts as absent
    return path


def artifact_routes(root: Path, *, served: ServedLog | None = None) -> list[Route]:
    """Routes serving the artifacts under `root` (mount them in the cloud app). `served`
    (optional) records every answered request."""
    route = _ArtifactRoute(root, served or ServedLog(keep=1))
    return [Route(ROUTE, route.artifact, methods=["GET", "HEAD"], name="artifact")]


class _ArtifactRoute:
    """Answers GET/HEAD for one artifact folder: find the file, pick the range, send it."""

    def __init__(self, root: Path, record: ServedLog) -> None:
        self.root = root
        self.record = record
        self.hashes = _Hashes()

    def artifact(self, request: Request) -> Response:
        p = request.path_params
        rel = artifact_relpath(p["name"], p["version"], p["file"])
        path = _resolve(self.root, p["name"], p["version"], p["file"])
        if path is None:
            self.record.record(Served(rel, request.method, 404, 0, 0))
            return PlainTextResponse("no such artifact", status_code=404)
        fd = os.open(path, os.O_RDONLY)  # one open file: the ETag and the bytes sent agree
        try:
            st = os.fstat(fd)
            etag = f'"{self.hashes.of(fd, st)}"'
            size = st.st_size
            headers = {"Accept-Ranges": "bytes", "ETag": etag, "Cache-Control": "no-cache"}
            if_range = request.headers.get("if-range")
            bounds = parse_range(request.headers.get("range") if if_range in (None, etag) else None, size)
        except RangeNotSatisfiable:
            os.close(fd)
            self.record.record(Served(rel, request.method, 416, 0, 0))
            return Response(status_code=416, headers={**headers, "Content-Range": f"bytes */{size}"})
        except BaseException:
            os.close(fd)
            raise
        return self._send(request.method, rel, fd, size, bounds, headers)

    def _send(
        self,
        method: str,
        rel: str,
        fd: int,
        size: int,
        bounds: tuple[int, int] | None,
        headers: dict[str, str],
    ) -> Response:
        """The 200 or 206 answer for the open file `fd`; it closes `fd` once the body is sent."""
        start, end = bounds or (0, size)
        status = 206 if bounds is not None else 200
        if bounds is not None:
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
        headers["Content-Length"] = str(end - start)
        self.record.record(Served(rel, method, status, start, end))
        if method == "HEAD":
            os.close(fd)
            return Response(status_code=status, headers=headers, media_type="application/octet-stream")
        return StreamingResponse(
            self._body(fd, start, end),
            status_code=status,
            headers=headers,
            media_type="application/octet-stream",
        )

    def _body(self, fd: int, start: int, end: int) -> Iterator[bytes]:
        try:
            offset = start
            while offset < end:
                block = os.pread(fd, min(_BLOCK, end - offset), offset)
                if not block:
                    log.error("artifact shrank while being served (fd %d at %d)", fd, offset)
                    return
                offset += len(block)
                self.record.add_bytes(len(block))
                yield block
        finally:
            os.close(fd)
