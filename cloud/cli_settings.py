"""Command-line settings of the cloud-side commands (`cloud serve`, `cloud ingest`, `fleet`):
flags derived from one typed model, each also read from EDGECASCADE_<SECTION>__<KEY>
(shared/config_env.py); a flag given wins over its variable. Errors name the flag or the
variable and never print a secret (shared/config_errors.py)."""

from __future__ import annotations

import argparse
import os
import typing
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator, BaseModel, SecretStr, ValidationError
from pydantic_core import PydanticUndefined

from edgecascade.shared.cli_values import path_problem, text_problem
from edgecascade.shared.config_env import read_environment, refused_values, variable_name, warn_unknown
from edgecascade.shared.config_errors import Loc, explain_validation_error, looks_secret, shorten
from edgecascade.shared.config_files import MAX_PATH_SHOWN, check_files, folder_problem
from edgecascade.shared.errors import ConfigError

M = TypeVar("M", bound=BaseModel)


def _host_port(value: str) -> str:
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError("expected HOST:PORT")
    return value


#: A broker address, HOST:PORT (split it with split_host_port).
HostPort = Annotated[str, AfterValidator(_host_port)]

#: Longest MQTT string (client id, user name, password): a 2-byte length prefix. paho fails
#: on a longer one in its network thread, a traceback, then "cannot reach the broker".
MQTT_STRING_BYTES = 65_535


def _mqtt_string(value: str) -> str:
    size = len(value.encode("utf-8", "surrogateescape"))
    if size > MQTT_STRING_BYTES:
        raise ValueError(f"at most {MQTT_STRING_BYTES} bytes (an MQTT string), got {size}")
    return value


def _mqtt_secret(value: SecretStr) -> SecretStr:
    _mqtt_string(value.get_secret_value())  # the message gives only the size, never the value
    return value


#: A client id or user name sent to the broker.
MqttString = Annotated[str, AfterValidator(_mqtt_string)]
#: A broker password.
MqttSecret = Annotated[SecretStr, AfterValidator(_mqtt_secret)]


def split_host_port(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    return host, int(port)


def flag_name(field: str) -> str:
    return "--" + field.replace("_", "-")


def _flag_of(loc: Loc) -> str:
    return flag_name(str(loc[0])) if loc else "(settings)"


def add_flags(
    parser: argparse.ArgumentParser, model: type[BaseModel], *, section: str, skip: Collection[str] = ()
) -> None:
    """One flag per field of `model` (booleans as switches); help ends with the variable's name."""
    for name, field in model.model_fields.items():
        if name in skip:
            continue
        help_text = (field.description or "").rstrip(".")
        env = variable_name((name,), section)
        if field.annotation is bool:
            parser.add_argument(
                flag_name(name), action="store_true", default=None, help=f"{help_text} ({env})"
            )
            continue
        shown = field.default not in (None, "", PydanticUndefined) and not field.is_required()
        default = f"; default: {field.default}" if shown else ""
        parser.add_argument(
            flag_name(name), default=None, metavar=name.upper(), help=f"{help_text} ({env}{default})"
        )


def given_flags(args: argparse.Namespace, model: type[BaseModel]) -> dict[str, Any]:
    """The fields of `model` given on the command line (None = not given)."""
    return {name: getattr(args, name) for name in model.model_fields if getattr(args, name, None) is not None}


def load_settings(
    model: type[M],
    flags: Mapping[str, Any],
    *,
    section: str,
    command: str,
    environ: Mapping[str, str] | None = None,
    renamed: Mapping[str, str] | None = None,
) -> M:
    """`model` from the flags given over EDGECASCADE_<SECTION>__* variables. Unknown EDGECASCADE_*
    variables are warned about once; a bad value is a ConfigError naming its flag or variable."""
    env = read_environment(model, os.environ if environ is None else environ, section=section)
    warn_unknown(env, command, renamed)
    values = {**env.values, **flags}
    sources = {loc: name for loc, name in env.sources.items() if loc[0] not in flags}
    problems = _value_problems(model, values, flags, sources)
    if problems:
        raise refused_values(problems, what=f"invalid settings of `{command}`")
    try:
        settings = model.model_validate(values)
    except ValidationError as exc:
        raise explain_validation_error(
            exc, what=f"invalid settings of `{command}`", model=model, sources=sources, name=_flag_of
        ) from None
    check_files(settings, sources=sources, name=_flag_of)
    for name in model.model_fields:
        folder = getattr(settings, name)
        problem = folder_problem(folder) if name.endswith("_dir") and isinstance(folder, Path) else None
        if problem is not None:
            where = sources.get((name,)) or flag_name(name)
            raise ConfigError(f"{problem}: {shorten(str(folder), MAX_PATH_SHOWN)}", key=where)
    return settings


def _value_problems(
    model: type[BaseModel], values: Mapping[str, Any], flags: Mapping[str, Any], sources: Mapping[Loc, str]
) -> list[tuple[str, str]]:
    """(flag or variable, problem) for each text value no setting can take: one that is not UTF-8
    (the variables' own are refused by read_environment), and a path that is empty, which would
    mean the current folder (`--artifacts-dir ""` would serve it), or too long to look up."""
    problems: list[tuple[str, str]] = []
    for name, value in values.items():
        if not isinstance(value, str) or name not in model.model_fields:
            continue
        where = flag_name(name) if name in flags else sources.get((name,), flag_name(name))
        problem = text_problem(value, secret=looks_secret(name)) if name in flags else None
        if problem is None and _is_path(model.model_fields[name].annotation):
            problem = path_problem(value)
        if problem is not None:
            problems.append((where, problem))
    return problems


def _is_path(annotation: Any) -> bool:
    return annotation is Path or Path in typing.get_args(annotation)
