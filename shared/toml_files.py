"""Read a TOML file a person wrote (a device profile, the cloud's token or model settings) in
bounded memory, every way it can be wrong a ConfigError naming the file.

A profile is a few KiB: a file over `MAX_TOML_BYTES`, something that is not a regular file (a
FIFO or /dev/zero would be read forever), text that is not UTF-8, nesting deep enough to
exhaust the parser's recursion, or a file the service user may not read are refused with what
was found, never a traceback."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from edgecascade.shared.bounded_read import FileTooLargeError, NotRegularFileError, read_bounded
from edgecascade.shared.errors import ConfigError

MAX_TOML_BYTES = 1 << 20


def read_toml(path: Path, *, what: str = "file", max_bytes: int = MAX_TOML_BYTES) -> dict[str, Any]:
    """The parsed document at `path`; ConfigError (file=path) for anything else."""
    file = str(path)
    try:
        data = read_bounded(path, max_bytes)
    except FileNotFoundError:
        raise ConfigError(f"{what} not found", file=file) from None
    except IsADirectoryError:
        raise ConfigError(f"expected a {what}, got a folder", file=file) from None
    except NotRegularFileError:
        raise ConfigError(f"expected a {what}, got a device, pipe or socket", file=file) from None
    except FileTooLargeError:
        raise ConfigError(f"over {max_bytes // 1024} KiB; a {what} is a few KiB of TOML", file=file) from None
    except PermissionError:
        raise ConfigError(f"{what} not readable by this user (uid {os.getuid()})", file=file) from None
    except OSError as exc:
        raise ConfigError(f"cannot read the {what}: {exc.strerror or exc}", file=file) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not UTF-8 text (byte {exc.start} is {data[exc.start]:#04x})", file=file) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}", file=file) from None
    except RecursionError:
        raise ConfigError("not valid TOML: arrays or tables nested too deeply", file=file) from None
