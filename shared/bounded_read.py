"""Read a file a user named, in bounded memory: only a regular file, at most `max_bytes`.

A FIFO would block the open until a writer comes, and a FIFO or a device such as /dev/zero
would then be read without end; a huge file would be held whole. Callers (profiles and other
TOML files, `agent predict` inputs) turn these OSErrors into their own errors naming the file."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path


class NotRegularFileError(OSError):
    """A device, pipe or socket where a file was expected."""


class FileTooLargeError(OSError):
    """More than the caller's `max_bytes`."""


def read_bounded(path: Path, max_bytes: int) -> bytes:
    """The bytes of the regular file at `path`. Raises IsADirectoryError, NotRegularFileError,
    FileTooLargeError, or the OSError of the open or read (FileNotFoundError, PermissionError, ...)."""
    # O_NONBLOCK: opening a FIFO must not wait for a writer; it is refused below.
    with os.fdopen(os.open(path, os.O_RDONLY | os.O_NONBLOCK), "rb") as f:
        mode = os.fstat(f.fileno()).st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(errno.EISDIR, "is a folder", str(path))
        if not stat.S_ISREG(mode):
            raise NotRegularFileError(errno.EINVAL, "not a regular file", str(path))
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise FileTooLargeError(errno.EFBIG, f"over {max_bytes} bytes", str(path))
    return data
