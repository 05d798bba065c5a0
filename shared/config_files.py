"""Start-up checks of the files a profile names: a missing CA or key file is a ConfigError that
names the key and the path, before any library (paho, ssl) turns it into a traceback.

Validators do no I/O: every loader (the device profile, the cloud commands' settings) calls
check_files() once the settings are valid."""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

from pydantic import BaseModel

from edgecascade.shared.config_errors import Loc, shorten
from edgecascade.shared.errors import ConfigError

#: Longest path quoted in an error (a flag or variable may name 128 KiB of path).
MAX_PATH_SHOWN = 200

#: Path keys that name a file read at start-up, by name: TLS certificates and keys, CA files,
#: token and key files (tls_ca, http_ca, ca_cert, client_key, token_file, public_key_file, ...).
#: A bare `key` is not here: the fleet's signing key is read only by the commands that sign.
INPUT_FILE_KEY = re.compile(r"^tls_|^client_(cert|key)|(^|_)ca(_|$)|(^|_)cert(file)?$|_file$")


def _section_in_use(section: BaseModel) -> bool:
    # A switched-off section's files are not read, so they need not exist.
    if getattr(section, "enabled", True) is False:
        return False
    return "url" not in type(section).model_fields or getattr(section, "url", None) is not None


def input_files(model: BaseModel, base: Loc = ()) -> Iterator[tuple[Loc, Path]]:
    """(location, path) of every input file set in a section that is in use."""
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            if _section_in_use(value):
                yield from input_files(value, (*base, name))
        elif isinstance(value, Path) and INPUT_FILE_KEY.search(name):
            yield (*base, name), value


def check_files(
    model: BaseModel,
    *,
    file: str | None = None,
    sources: Mapping[Loc, str] | None = None,
    name: Callable[[Loc], str] | None = None,
) -> None:
    """Raise ConfigError for the first input file that is missing, not a file or unreadable,
    naming its key (or `sources`' variable, or `name(loc)`, e.g. a flag) and the path."""
    sources = sources or {}
    for loc, path in input_files(model):
        problem = _problem(path)
        if problem is None:
            continue
        variable = sources.get(loc)
        key = variable or (name(loc) if name else ".".join(str(p) for p in loc))
        shown = shorten(str(path), MAX_PATH_SHOWN)
        raise ConfigError(f"file {problem}: {shown}", file=None if variable else file, key=key)


def folder_problem(path: Path) -> str | None:
    """Why `path` cannot be a folder a command makes or writes into, or None (a folder, or
    nothing there yet): a file, a FIFO or a device there made mkdir raise a traceback."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"cannot be checked ({exc.strerror or type(exc).__name__})"
    return None if stat.S_ISDIR(mode) else "not a folder"


def _problem(path: Path) -> str | None:
    """Why `path` is not a readable regular file, or None. One stat: Path.is_file() raises on
    a name too long for the file system (ENAMETOOLONG), where this says so."""
    try:
        mode = path.stat().st_mode
    except (FileNotFoundError, NotADirectoryError):
        return "not found"
    except OSError as exc:
        return f"cannot be checked ({exc.strerror or type(exc).__name__})"
    if stat.S_ISDIR(mode):
        return "is a folder"
    if not stat.S_ISREG(mode):
        return "not a regular file (a device, pipe or socket)"
    return None if os.access(path, os.R_OK) else "not readable"
