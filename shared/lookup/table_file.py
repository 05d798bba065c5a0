"""The versioned lookup-table artifact: key -> cloud-model outputs, read through mmap.

Layout (all little-endian)::

    0   magic b"ECLUTBL\\0"          8 bytes
    8   format version              uint32
    12  metadata length M           uint32
    16  CRC-32 of the metadata      uint32
    20  metadata, UTF-8 JSON        M bytes (TableMeta)
        zero padding to a multiple of 64
    B   keys                        N x 16 bytes, sorted ascending, unique
    B+16N  probabilities            N x C float16 (C = len(labels))

Opening reads only the header; the body is memory-mapped, so a million-entry table costs a
few pages of RAM, and a lookup is a binary search over the mapped key array. The body's CRC-32
is checked at open by streaming the file in 1 MiB reads (page cache, not the agent's RSS), and
with it what the binary search and the answers rely on: keys strictly ascending (sorted, no
duplicates) and every probability a finite number in 0..1. A CRC only proves the file is the
one its writer made; a hand-made or buggy table can be consistent and still wrong.

A table file is opened without blocking and must be a regular file (a FIFO would hang the
open, a device be read without end); its metadata is at most MAX_META_BYTES, and the body
must be exactly as long as the header says before anything of it is read or mapped.
"""

import logging
import mmap
import os
import stat
import struct
import zlib
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO, Literal, Self

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from edgecascade.shared.atomic_file import atomic_write_parts
from edgecascade.shared.errors import InputError, StorageError
from edgecascade.shared.lookup.keys import KEY_BYTES, KeyScheme

log = logging.getLogger(__name__)

MAGIC = b"ECLUTBL\x00"
FORMAT_VERSION = 1
_HEADER = struct.Struct("<8sIII")
_ALIGN = 64
_CHUNK = 1 << 20
_PROBS = np.dtype("<f2")
#: The header's JSON (names, versions, labels): 16 MiB holds a label set of ~500,000 classes.
MAX_META_BYTES = 16 << 20
#: Entries whose keys or probabilities are checked per numpy call at open (bounded temporaries).
_CHECK_ROWS = 1 << 16


class TableMeta(BaseModel):
    """The table's header: where its answers came from and how to read its body."""

    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())

    name: str = Field(description="Table name, e.g. digits-catalog.")
    version: str = Field(description="Table version; answers report it as table_version.")
    created_at: str = Field(description="UTC build time, ISO 8601.")
    cloud_model: str = Field(description="Name of the cloud model that computed the outputs.")
    cloud_model_version: str = Field(description="Version of that cloud model.")
    encoding_version: int = Field(description="Feature-encoding version of content keys.")
    key_scheme: KeyScheme = Field(description="content: hash of the encoded tensor; application: caller key.")
    labels: list[str] = Field(min_length=1, description="Class names, in output order.")
    entries: int = Field(ge=0, description="Number of keys.")
    output: Literal["probabilities-f16"] = Field(description="Per-entry output encoding.")
    body_bytes: int = Field(ge=0, description="Size of keys + outputs.")
    body_crc32: int = Field(ge=0, description="CRC-32 of the body.")
    source: str = Field("", description="What the inputs were (data set, folder, key file).")


def _body_offset(meta_len: int) -> int:
    return -(-(_HEADER.size + meta_len) // _ALIGN) * _ALIGN


def write_table(
    path: Path,
    keys: np.ndarray,
    probabilities: np.ndarray,
    *,
    name: str,
    version: str,
    cloud_model: str,
    cloud_model_version: str,
    encoding_version: int,
    key_scheme: KeyScheme,
    labels: list[str],
    source: str = "",
) -> TableMeta:
    """Write a table atomically (temporary file, fsync, rename). `keys` is (N, 16) uint8 in any
    order; duplicate keys must carry identical outputs (they are stored once), else InputError."""
    keys = np.ascontiguousarray(keys, dtype=np.uint8).reshape(-1, KEY_BYTES)
    probs = np.asarray(probabilities, dtype=np.float32)
    if probs.shape != (len(keys), len(labels)):
        raise InputError(
            f"expected probabilities of shape {[len(keys), len(labels)]}, got {list(probs.shape)}"
        )
    if probs.size and not (np.isfinite(probs).all() and probs.min() >= 0.0 and probs.max() <= 1.0):
        # A reader refuses such a table; never write one.
        raise InputError("probabilities must be finite numbers in 0..1 (NaN, infinity or out of range)")
    flat, probs16 = _sorted_unique(keys, probs, name)
    body_keys, body_probs = flat.tobytes(), probs16.tobytes()
    meta = TableMeta(
        name=name,
        version=version,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        cloud_model=cloud_model,
        cloud_model_version=cloud_model_version,
        encoding_version=encoding_version,
        key_scheme=key_scheme,
        labels=list(labels),
        entries=len(flat),
        output="probabilities-f16",
        body_bytes=len(body_keys) + len(body_probs),
        body_crc32=zlib.crc32(body_probs, zlib.crc32(body_keys)),
        source=source,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_parts(path, (_header(meta), body_keys, body_probs))
    return meta


def _sorted_unique(keys: np.ndarray, probs: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    """The keys (as S16) sorted, each once, with their float16 outputs. InputError when a
    repeated key carries different outputs."""
    flat = keys.view(f"S{KEY_BYTES}").ravel()
    order = np.argsort(flat, kind="stable")
    flat, probs16 = flat[order], probs[order].astype(_PROBS)
    dup = np.zeros(len(flat), dtype=bool)
    dup[1:] = flat[1:] == flat[:-1]
    if dup.any():
        conflicts = np.flatnonzero(dup & np.any(probs16 != np.roll(probs16, 1, axis=0), axis=1))
        if conflicts.size:
            raise InputError(f"{conflicts.size} duplicate keys carry different outputs")
        log.info("table %s: %d duplicate keys stored once", name, int(dup.sum()))
        flat, probs16 = flat[~dup], probs16[~dup]
    return flat, probs16


def _header(meta: TableMeta) -> bytes:
    """Fixed header and metadata, zero-padded to where the body starts."""
    meta_bytes = meta.model_dump_json().encode()
    header = _HEADER.pack(MAGIC, FORMAT_VERSION, len(meta_bytes), zlib.crc32(meta_bytes)) + meta_bytes
    return header + b"\x00" * (_body_offset(len(meta_bytes)) - len(header))


class TableFile:
    """An open, validated table. `find(key)` returns the entry index or None; `probabilities(i)`
    the entry's outputs. Safe for concurrent readers; `close()` only when no reader remains."""

    def __init__(self, path: Path, meta: TableMeta, mapped: mmap.mmap, offset: int) -> None:
        self.path = path
        self.meta = meta
        self._mmap = mapped
        n, classes = meta.entries, len(meta.labels)
        self._keys = np.frombuffer(mapped, dtype=f"S{KEY_BYTES}", count=n, offset=offset)
        self._probs = np.frombuffer(
            mapped, dtype=_PROBS, count=n * classes, offset=offset + n * KEY_BYTES
        ).reshape(n, classes)

    @classmethod
    def open(cls, path: Path, *, encoding_version: int, verify_checksum: bool = True) -> Self:
        """Validate and map `path`. Raises StorageError naming the file and the problem: not a
        table, truncated, corrupt (CRC), unsorted or repeated keys, probabilities that are not
        finite numbers in 0..1, or built for another feature-encoding version. The content
        checks run with the checksum (`verify_checksum`)."""
        with _open_table(path) as f:
            meta, offset = _read_header(f, path)
            if meta.encoding_version != encoding_version:
                raise StorageError(
                    f"table {path}: built for feature-encoding version {meta.encoding_version}, "
                    f"this device encodes with version {encoding_version}"
                )
            want = meta.entries * (KEY_BYTES + 2 * len(meta.labels))
            size = os.fstat(f.fileno()).st_size
            if meta.body_bytes != want or size != offset + want:
                raise StorageError(
                    f"table {path}: truncated or padded: {size} bytes, header promises {offset + want}"
                )
            if verify_checksum:
                f.seek(offset)
                crc = 0
                while chunk := f.read(_CHUNK):
                    crc = zlib.crc32(chunk, crc)
                if crc != meta.body_crc32:
                    raise StorageError(f"table {path}: body checksum mismatch (corrupt file)")
            mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        table = cls(path, meta, mapped, offset)
        problem = table._body_problem() if verify_checksum else None
        if problem is not None:
            table.close()  # no view of the map outlives _body_problem, so it can close
            raise StorageError(f"table {path}: {problem}")
        return table

    def _body_problem(self) -> str | None:
        """Keys strictly ascending (what `find`'s binary search needs; equal neighbours are
        duplicates) and probabilities finite in 0..1, checked in bounded slices of the map."""
        keys, probs, n = self._keys, self._probs, self.meta.entries
        for start in range(0, n, _CHECK_ROWS):
            stop = min(start + _CHECK_ROWS + 1, n)
            ordered = keys[start + 1 : stop] > keys[start : stop - 1]
            if not ordered.all():
                i = start + int(np.argmin(ordered))
                what = "the same key twice" if keys[i] == keys[i + 1] else "out of order"
                return f"keys {i} and {i + 1} are {what} (keys must be sorted and unique)"
            rows = probs[start : start + _CHECK_ROWS]
            good = np.isfinite(rows) & (rows >= 0) & (rows <= 1)
            if not good.all():
                row = start + int(np.argmin(good.all(axis=1)))
                return (
                    f"entry {row} has probabilities that are not finite numbers in 0..1 "
                    "(NaN, infinity or out of range)"
                )
        return None

    def __len__(self) -> int:
        return self.meta.entries

    def find(self, key: bytes) -> int | None:
        """Index of `key` (KEY_BYTES long), or None."""
        probe = np.array(key, dtype=f"S{KEY_BYTES}")
        i = int(np.searchsorted(self._keys, probe))
        if i < len(self._keys) and self._keys[i : i + 1].tobytes() == key:
            return i
        return None

    def probabilities(self, index: int) -> np.ndarray:
        """Entry `index`'s outputs as a float32 copy."""
        return self._probs[index].astype(np.float32)

    def close(self) -> None:
        del self._keys, self._probs
        self._mmap.close()


def read_header(path: Path) -> tuple[TableMeta, int]:
    """The header of the table at `path` and where its body starts, without reading the body.
    Raises StorageError for a file that is not a table or whose header is corrupt."""
    with _open_table(path) as f:
        return _read_header(f, path)


def _open_table(path: Path) -> BinaryIO:
    """`path` opened for reading, refused unless a regular file; StorageError naming it."""
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; it is refused below.
        f = os.fdopen(os.open(path, os.O_RDONLY | os.O_NONBLOCK), "rb")
    except FileNotFoundError:
        raise StorageError(f"table {path}: file not found") from None
    except IsADirectoryError:
        raise StorageError(f"table {path}: a folder, not a table file") from None
    except OSError as exc:
        raise StorageError(f"table {path}: cannot read ({exc.strerror or exc})") from None
    mode = os.fstat(f.fileno()).st_mode
    if not stat.S_ISREG(mode):
        f.close()
        what = "a folder" if stat.S_ISDIR(mode) else "not a regular file (a device, pipe or socket)"
        raise StorageError(f"table {path}: {what}, not a table file")
    return f


def _read_header(f: BinaryIO, path: Path) -> tuple[TableMeta, int]:
    try:
        fixed = f.read(_HEADER.size)
        if len(fixed) < _HEADER.size:
            raise StorageError(f"table {path}: truncated header ({len(fixed)} bytes)")
        magic, fmt, meta_len, meta_crc = _HEADER.unpack(fixed)
        if magic != MAGIC:
            raise StorageError(f"table {path}: not a lookup table (bad magic {magic!r})")
        if fmt != FORMAT_VERSION:
            raise StorageError(f"table {path}: format version {fmt}, this reader supports {FORMAT_VERSION}")
        if meta_len > MAX_META_BYTES:
            # Never read whole: 4 GiB announced here would be held in memory.
            raise StorageError(
                f"table {path}: header announces {meta_len} bytes of metadata, over {MAX_META_BYTES}"
            )
        meta_bytes = f.read(meta_len)
    except OSError as exc:
        raise StorageError(f"table {path}: cannot read ({exc.strerror or exc})") from None
    if len(meta_bytes) != meta_len or zlib.crc32(meta_bytes) != meta_crc:
        raise StorageError(f"table {path}: header metadata truncated or corrupt")
    try:
        meta = TableMeta.model_validate_json(meta_bytes)
    except ValidationError as exc:
        raise StorageError(f"table {path}: invalid header metadata: {_first_problem(exc)}") from None
    return meta, _body_offset(meta_len)


def _first_problem(exc: ValidationError) -> str:
    error = exc.errors()[0]
    key = ".".join(str(part) for part in error["loc"])
    msg = str(error["msg"]).removeprefix("Invalid JSON: ")
    return f"{key}: {msg}" if key else msg
