"""One way to explain a pydantic ValidationError to a person, for every config loader (the device
profile, `cloud serve`, `cloud ingest`, `fleet`).

Each line names where the bad value came from (the file's key, the environment variable or the
flag), says what was expected, suggests the closest known key for a typo, and never prints a value
that may be a secret: nothing under a key that looks like a token, password, secret or key, and
nothing under an unknown key (a mistyped `tokn` holds the token all the same), and no
user:password part of a URL."""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pydantic import BaseModel, SecretBytes, SecretStr, ValidationError
from pydantic_core import ErrorDetails

from edgecascade.shared.errors import ConfigError

#: Parts of a key name that mark its value as secret (matched anywhere in the name).
SECRET_WORDS = ("token", "password", "passwd", "secret", "key", "credential", "auth")

#: Longest value quoted back in an error; longer ones are cut (no unbounded output).
MAX_SHOWN = 80

#: Problems listed one per line; the rest are counted.
MAX_LINES = 20

#: Longest message of one problem: a validator's message may quote a 128 KiB variable whole.
MAX_MESSAGE = 300

Loc = tuple[str | int, ...]

# user:password@ in a URL (rtsp://user:pass@camera/stream): shown as ***@ wherever it appears.
_URL_CREDENTIALS = re.compile(r"(?<=://)[^/@\s]+@")


def mask_url_credentials(text: str) -> str:
    return _URL_CREDENTIALS.sub("***@", text)


def shorten(text: str, limit: int = MAX_SHOWN) -> str:
    """`text` cut to `limit` characters, marked with "..." when cut (paths, names, values)."""
    return text if len(text) <= limit else text[:limit] + "..."


def looks_secret(name: str) -> bool:
    """True for a key or variable name whose value must never be printed."""
    lowered = name.lower()
    return any(word in lowered for word in SECRET_WORDS)


def closest(name: str, candidates: Sequence[str]) -> str | None:
    """The known name a typo most likely meant, or None when nothing is close."""
    import difflib  # only when there is a typo to explain

    found = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return found[0] if found else None


def sub_model(annotation: Any) -> type[BaseModel] | None:
    """The model a field holds, looking through Optional and list[...]/dict[..., ...]."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType, list, tuple, set, frozenset, dict):
        for arg in typing.get_args(annotation):
            found = sub_model(arg)
            if found is not None:
                return found
    return None


def model_at(model: type[BaseModel] | None, path: Sequence[str | int]) -> type[BaseModel] | None:
    """The model that holds the keys at `path` (list indices are stepped over)."""
    for part in path:
        if model is None:
            return None
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part)
        if field is None:
            return None
        model = sub_model(field.annotation)
    return model


def _dotted(loc: Loc) -> str:
    return ".".join(str(p) for p in loc) or "(top level)"


def _shown_input(error: ErrorDetails, loc: Loc) -> str:
    """' (got ...)' for a harmless scalar input, '' when it may be secret or says nothing."""
    value = error.get("input")
    if error["type"] in ("missing", "extra_forbidden") or isinstance(value, dict | list):
        return ""
    if isinstance(value, SecretStr | SecretBytes) or any(looks_secret(str(p)) for p in loc):
        return ""
    text = mask_url_credentials(repr(value))
    return f" (got {text[:MAX_SHOWN]}...)" if len(text) > MAX_SHOWN else f" (got {text})"


def _message(error: ErrorDetails, loc: Loc) -> str:
    msg = error["msg"]
    if error["type"] == "extra_forbidden":
        return "unknown key (not a setting here)"
    if any(looks_secret(str(p)) for p in loc):
        # A validator's own message may quote the value it refused.
        value = error.get("input")
        if isinstance(value, str) and value and value in msg:
            return f"invalid value ({error['type']})"
    msg = mask_url_credentials(msg)  # before any cut, which could leave half a user:password@
    value = error.get("input")
    if isinstance(value, str) and len(value) > MAX_SHOWN:
        # A validator quoting a huge input (`unknown backend '999...'`) quotes it cut.
        for quoted in {mask_url_credentials(value), mask_url_credentials(repr(value)[1:-1])}:
            msg = msg.replace(quoted, shorten(quoted))
    return shorten(msg, MAX_MESSAGE)


def _suggestion(
    error: ErrorDetails, loc: Loc, model: type[BaseModel] | None, rename: Callable[[Loc], str]
) -> str:
    if error["type"] != "extra_forbidden" or not loc or not isinstance(loc[-1], str):
        return ""
    holder = model_at(model, loc[:-1])
    if holder is None:
        return ""
    guess = closest(loc[-1], list(holder.model_fields))
    return f"; did you mean {rename((*loc[:-1], guess))}?" if guess else ""


def explain_validation_error(
    exc: ValidationError,
    *,
    what: str,
    model: type[BaseModel] | None = None,
    file: str | None = None,
    sources: Mapping[Loc, str] | None = None,
    name: Callable[[Loc], str] | None = None,
) -> ConfigError:
    """The ConfigError for `exc`: one line per problem, each naming its source.

    `sources` maps a location (or a prefix of it) to the variable or flag that supplied it; other
    locations are named by `name` (default: the dotted key, read from `file` when one is given).
    `model` is the validated model, used to suggest the known key a typo meant."""
    sources = sources or {}
    rename = name or _dotted

    def source_of(loc: Loc) -> tuple[str, bool]:
        for cut in range(len(loc), 0, -1):
            given = sources.get(loc[:cut])
            if given is not None:
                rest = loc[cut:]
                return (given + (f"[{_dotted(rest)}]" if rest else ""), False)
        return (rename(loc), True)

    lines: list[str] = []
    first_name = ""
    for error in exc.errors():
        loc: Loc = tuple(error["loc"])
        where, in_file = source_of(loc)
        if not lines:
            first_name = where
        suggestion = _suggestion(error, loc, model, rename) if in_file else ""
        lines.append(f"{where}: {_message(error, loc)}{_shown_input(error, loc)}{suggestion}")
    count = f" ({len(lines)} problems)" if len(lines) > 1 else ""
    if len(lines) > MAX_LINES:
        lines[MAX_LINES:] = [f"... and {len(lines) - MAX_LINES} more"]
    # Headed by the file and the first problem's key (or variable); each line names its own.
    explained = ConfigError(f"{what}{count}:\n  " + "\n  ".join(lines), file=file, key=first_name)
    return explained
