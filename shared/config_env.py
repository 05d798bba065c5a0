"""The one environment scheme of every edgecascade command: `EDGECASCADE_<SECTION>__<KEY>`.

    agent (the device profile)   EDGECASCADE_DEVICE_ID, EDGECASCADE_CLOUD__URL,
                                 EDGECASCADE_TELEMETRY__HARD_EXAMPLES__ENABLED, ...
                                 (a top-level key has no section; nested sections add a `__` each)
    cloud serve                  EDGECASCADE_SERVE__PORT, EDGECASCADE_SERVE__TOKENS, ...
    cloud ingest                 EDGECASCADE_INGEST__STORE, EDGECASCADE_INGEST__PASSWORD, ...
    fleet                        EDGECASCADE_FLEET__BROKER, EDGECASCADE_FLEET__PASSWORD, ...

A flag given on the command line wins over its variable. List and table values are JSON
(`EDGECASCADE_GROUPS='["store-12"]'`). A variable with the prefix that no setting of the running
command takes is logged once as a warning, with the closest known name, and ignored: one
environment file can serve several commands. Nothing here reads the environment at import.

A value must be UTF-8 text (a profile is UTF-8 TOML, and paho, JSON and SQLite take nothing
else); a JSON value must be plain JSON: no NaN or Infinity, no number past a float's range, at
most MAX_JSON_DEPTH levels deep (Python's recursive decoder would raise RecursionError). Such a
value is refused as a ConfigError naming the variable, never quoting a secret's value."""

from __future__ import annotations

import json
import logging
import math
import re
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from edgecascade.shared.cli_values import text_problem
from edgecascade.shared.config_errors import MAX_LINES, Loc, closest, looks_secret, shorten, sub_model
from edgecascade.shared.errors import ConfigError

log = logging.getLogger(__name__)

PREFIX = "EDGECASCADE_"

#: Sections of the commands other than the agent, for the hint in an unknown-variable warning.
COMMAND_SECTIONS = {
    "SERVE": "edgecascade cloud serve",
    "INGEST": "edgecascade cloud ingest",
    "FLEET": "edgecascade fleet",
}

#: Names read by no setting but by edgecascade itself (never warned about).
#: EDGECASCADE_CONFIG: the agent's default profile; EDGECASCADE_SERVE_SETTINGS: `cloud serve`
#: hands its settings to its worker processes in it; EDGECASCADE_LOG_JSON: JSON log lines
#: (set by --log-json for child processes).
RESERVED = frozenset({"EDGECASCADE_CONFIG", "EDGECASCADE_SERVE_SETTINGS", "EDGECASCADE_LOG_JSON"})

#: Names of earlier releases, each with the name that replaced it.
RENAMED = {
    "EDGECASCADE_CLOUD_TOKENS": "EDGECASCADE_SERVE__TOKENS",
    "EDGECASCADE_MQTT_PASSWORD": "EDGECASCADE_INGEST__PASSWORD",
    "EDGECASCADE_FLEET_PASSWORD": "EDGECASCADE_FLEET__PASSWORD",
}

#: Longest name (after the prefix) an unknown variable is compared with the known ones by.
MAX_NAME = 100

#: Deepest nesting of a JSON value; a profile's deepest list or table is a few levels down.
MAX_JSON_DEPTH = 32

#: A JSON string (skipped when counting brackets) or one bracket.
_JSON_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"?|[\[\]{}]')

_warned: set[str] = set()


class JsonValueRefused(ValueError):
    """JSON that Python's decoder takes but a setting must not: NaN, Infinity, too deep."""


def _json_depth(text: str) -> int:
    """How deep brackets nest in `text`, strings skipped; counted without recursion."""
    depth = deepest = 0
    for match in _JSON_TOKEN.finditer(text):
        token = match.group()
        if token in ("[", "{"):
            depth += 1
            deepest = max(deepest, depth)
        elif token in ("]", "}"):
            depth -= 1
    return deepest


def _refuse_constant(name: str) -> Any:
    raise JsonValueRefused(f"holds {name} (not a JSON number)")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise JsonValueRefused(f"holds {shorten(text, 20)} (beyond the range of a float)")
    return value


def decode_json_value(text: str, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """`text` as plain JSON. JsonValueRefused (a ValueError) for NaN, Infinity, a number past a
    float's range or nesting deeper than `max_depth`; ValueError for text that is not JSON."""
    if _json_depth(text) > max_depth:
        raise JsonValueRefused(f"nested deeper than {max_depth} levels")
    return json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)


def variable_name(path: Iterable[str | int], section: str | None = None) -> str:
    """The variable of a setting: ("cloud", "url") -> EDGECASCADE_CLOUD__URL."""
    parts = ([section] if section else []) + [str(p).upper() for p in path]
    return PREFIX + "__".join(parts)


def setting_paths(model: type[BaseModel], base: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    """Every settable key of `model` (sections walked into) -> its annotation."""
    out: dict[tuple[str, ...], Any] = {}
    for name, info in model.model_fields.items():
        sub = sub_model(info.annotation)
        if sub is not None and typing.get_origin(info.annotation) not in (list, tuple, set, dict):
            out.update(setting_paths(sub, (*base, name)))
        else:
            out[(*base, name)] = info.annotation
    return out


def _wants_json(annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    if origin in (list, tuple, set, frozenset, dict):
        return True
    return any(_wants_json(arg) for arg in typing.get_args(annotation) if arg is not type(None))


@dataclass
class EnvOverrides:
    """What the environment sets for one command."""

    values: dict[str, Any] = field(default_factory=dict)  # nested, ready to merge over a file
    sources: dict[Loc, str] = field(default_factory=dict)  # setting location -> variable name
    unknown: list[str] = field(default_factory=list)  # variables no setting here takes
    known: list[str] = field(default_factory=list)  # every variable this command reads


def read_environment(
    model: type[BaseModel], environ: Mapping[str, str], *, section: str | None = None
) -> EnvOverrides:
    """The settings of `model` found in `environ`, and the EDGECASCADE_* names it does not take."""
    paths = setting_paths(model)
    by_name = {variable_name(path, section): path for path in paths}
    found = EnvOverrides(known=sorted(by_name))
    problems: list[tuple[str, str]] = []  # (variable, what is wrong with its value)
    for name, raw in sorted(environ.items()):
        if not name.startswith(PREFIX) or name in RESERVED:
            continue
        path = by_name.get(name.upper())
        if path is None:
            found.unknown.append(name)
            continue
        problem = text_problem(raw, secret=any(looks_secret(part) for part in path))
        if problem is not None:
            problems.append((name, problem))
            continue
        value: Any = raw
        if _wants_json(paths[path]):
            try:
                value = decode_json_value(raw)
            except JsonValueRefused as exc:
                problems.append((name, f"{exc}; expected {_json_kind(paths[path])}"))
                continue
            except ValueError:
                value = raw  # validation then says what was expected, naming the variable
        node = found.values
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
        found.sources[path] = name
    if problems:
        raise refused_values(problems, what="invalid environment")
    return found


def refused_values(problems: list[tuple[str, str]], *, what: str) -> ConfigError:
    """One ConfigError for (variable or flag, problem) pairs: headed by the first, a line each."""
    if len(problems) == 1:
        return ConfigError(problems[0][1], key=problems[0][0])
    lines = [f"{where}: {problem}" for where, problem in problems[:MAX_LINES]]
    if len(problems) > MAX_LINES:
        lines.append(f"... and {len(problems) - MAX_LINES} more")
    text = f"{what} ({len(problems)} problems):\n  " + "\n  ".join(lines)
    return ConfigError(text, key=problems[0][0])


def _json_kind(annotation: Any) -> str:
    kinds = {typing.get_origin(a) or a for a in (annotation, *typing.get_args(annotation))}
    if kinds & {list, tuple, set, frozenset}:
        return "a JSON list"
    return "a JSON table" if dict in kinds else "JSON"


def unknown_hint(name: str, known: list[str], command: str, renamed: Mapping[str, str] | None = None) -> str:
    """Why `name` is ignored by `command`, and what it probably meant."""
    text = f"{shorten(name)} is not a setting of `{command}`; ignored"
    if len(name) > len(PREFIX) + MAX_NAME:
        return text  # no setting is named anything so long: nothing to guess
    new_name = {**RENAMED, **(renamed or {})}.get(name.upper())
    if new_name in known:
        return text + f" (renamed: did you mean {new_name}?)"
    owner = COMMAND_SECTIONS.get(_section_of(name))
    if owner and owner != command:
        return text + f" (read by `{owner}`)"
    # Compare without the common prefix, which would make every name look alike.
    suffixes = {k[len(PREFIX) :]: k for k in known}
    guess = closest(name[len(PREFIX) :].upper(), list(suffixes))
    moved = ""
    if new_name:
        new_owner = COMMAND_SECTIONS.get(_section_of(new_name))
        moved = f"`{new_owner}` reads it as {new_name}" if new_owner else f"renamed {new_name}"
    hints = [f"did you mean {suffixes[guess]}?" if guess else "", moved]
    shown = " ".join(h for h in hints if h)
    return text + (f" ({shown})" if shown else "")


def _section_of(name: str) -> str:
    return name[len(PREFIX) :].split("__", 1)[0].upper()


def warn_unknown(found: EnvOverrides, command: str, renamed: Mapping[str, str] | None = None) -> None:
    """Log each unknown variable once per process; never fatal (one env file serves many commands).
    `renamed` adds a command's own earlier names (old name -> new name) to RENAMED."""
    for name in found.unknown:
        if name in _warned:
            continue
        _warned.add(name)
        log.warning("%s", unknown_hint(name, found.known, command, renamed))
