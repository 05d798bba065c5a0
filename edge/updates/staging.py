"""A blob being downloaded into the staging area, chunk by chunk, in any order, resumably.

Each chunk is checked against its SHA-256 from the signed manifest before it is written. After a
restart the file is re-scanned and every chunk whose bytes already match is kept, so a torn write
from a power cut is simply fetched again."""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from pathlib import Path

from edgecascade.shared.manifest import Blob

log = logging.getLogger(__name__)


class StagedBlob:
    """Thread-safe: transports call `write_chunk` from their own threads; `done` is set when complete."""

    def __init__(self, path: Path, blob: Blob) -> None:
        self.path = path
        self.blob = blob
        self.count = len(blob.chunk_sha256)
        self._lock = threading.Lock()
        self.done = threading.Event()
        self.rejected_chunks = 0
        self.progressed = threading.Event()  # set on every accepted chunk (for stall detection)
        #: A write that failed (a full disk): the download ends at once (`done`), and
        #: fetch_verified raises it instead of waiting for chunks that can never be stored.
        self.write_error: OSError | None = None
        exists = path.is_file() and path.stat().st_size == blob.size_bytes
        if not exists:
            with open(path, "wb") as f:
                f.truncate(blob.size_bytes)
        self._fd = os.open(path, os.O_RDWR)
        self.missing = set(range(self.count)) if not exists else self._scan()
        if exists:
            log.info(
                "resuming download %s: %d of %d chunks present",
                path.name,
                self.count - len(self.missing),
                self.count,
            )
        if not self.missing:
            self.done.set()

    def _scan(self) -> set[int]:
        missing = set()
        for i in range(self.count):
            start, end = self.blob.chunk_bounds(i)
            data = os.pread(self._fd, end - start, start)
            if hashlib.sha256(data).hexdigest() != self.blob.chunk_sha256[i]:
                missing.add(i)
        return missing

    @property
    def received_bytes(self) -> int:
        with self._lock:
            missing = sum(self.blob.chunk_bounds(i)[1] - self.blob.chunk_bounds(i)[0] for i in self.missing)
        return self.blob.size_bytes - missing

    @property
    def progress(self) -> float:
        return self.received_bytes / self.blob.size_bytes

    def write_chunk(self, index: int, data: bytes) -> bool:
        """Store chunk `index` if its hash matches; returns whether it was accepted."""
        if not 0 <= index < self.count:
            self.rejected_chunks += 1
            log.warning("chunk %d out of range for %s; ignored", index, self.path.name)
            return False
        start, end = self.blob.chunk_bounds(index)
        if len(data) != end - start or hashlib.sha256(data).hexdigest() != self.blob.chunk_sha256[index]:
            self.rejected_chunks += 1
            log.warning("chunk %d of %s has a wrong size or hash; ignored", index, self.path.name)
            return False
        with self._lock:
            if index not in self.missing or self._fd < 0 or self.write_error is not None:
                return True
            try:
                os.pwrite(self._fd, data, start)
                self.missing.discard(index)
                complete = not self.missing
                if complete:
                    os.fsync(self._fd)
            except OSError as exc:  # called from a transport's thread: hand it to the worker
                log.error("cannot write chunk %d of %s: %s", index, self.path.name, exc)
                self.write_error = exc
                complete = True
        if complete:
            self.done.set()
        # After `done`: a transport woken by this event must already see the download complete,
        # or it waits a whole stall timeout for progress that will never come.
        self.progressed.set()
        return True

    def missing_sorted(self) -> list[int]:
        with self._lock:
            return sorted(self.missing)

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
