"""Files that a crash (kill -9, power cut) leaves either old or new, never half written: used by
the device's model store and by the cloud's artifact folder."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path


def fsync_dir(path: Path) -> None:
    """Make a rename inside `path` durable (the directory entry itself is flushed)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes) -> None:
    """Replace `path` with `data`: temp file + fsync + rename + fsync of the directory."""
    atomic_write_parts(path, (data,))


def atomic_write_parts(path: Path, parts: Iterable[bytes]) -> None:
    """`atomic_write` of the parts one after the other, without joining them in memory first."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as f:
            for part in parts:
                f.write(part)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)  # a full disk: give back what the half-written copy took
        raise
    fsync_dir(path.parent)
