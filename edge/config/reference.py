"""The reference of every profile key, generated from the typed profile (never written by hand):
`edgecascade agent config --schema` prints the JSON schema, `--markdown` docs/profile-reference.md."""

from __future__ import annotations

import enum
import json
import re
import types
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from edgecascade.edge.config.profile import DeviceProfile
from edgecascade.shared.config_env import variable_name
from edgecascade.shared.config_errors import sub_model


def json_schema() -> str:
    """The profile's JSON schema (draft 2020-12), for editors and validators."""
    return json.dumps(DeviceProfile.model_json_schema(), indent=2) + "\n"


def type_name(annotation: Any) -> str:
    """A short, readable name of a field's type: `int`, `path or unset`, `"tflite" or "onnx"`."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return type_name(args[0])
    if origin is typing.Literal:
        return " or ".join(json.dumps(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        names = [type_name(a) for a in args if a is not type(None)]
        return " or ".join(names) + (" or unset" if type(None) in args else "")
    if origin in (list, tuple, set, frozenset):
        return f"list of {type_name(args[0])}" if args else "list"
    if origin is dict:
        return f"table of {type_name(args[1])}" if len(args) == 2 else "table"
    if annotation is SecretStr:
        return "secret string"
    if isinstance(annotation, type):
        if issubclass(annotation, Path):
            return "path"
        if issubclass(annotation, BaseModel):
            return "table"
        if issubclass(annotation, enum.Enum):
            return " or ".join(json.dumps(m.value) for m in annotation)
        return {"str": "string", "int": "integer", "float": "number", "bool": "boolean"}.get(
            annotation.__name__, annotation.__name__
        )
    return str(annotation)


def _default(info: FieldInfo) -> str:
    if info.is_required():
        return "required"
    value = info.default_factory() if info.default_factory is not None else info.default  # type: ignore[call-arg]
    if value is None or value is PydanticUndefined:
        return "unset"
    return "`" + json.dumps(_plain(value)) + "`"


def _plain(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _section(model: type[BaseModel], path: tuple[str, ...], out: list[str], *, listed: bool = False) -> None:
    dotted = ".".join(path)
    title = "top level" if not path else f"[[{dotted}]] (a list of tables)" if listed else f"[{dotted}]"
    doc = (model.__doc__ or "").strip().splitlines()[0] if model.__doc__ and path else ""
    doc = re.sub(r"^\[[\w.]+\]:\s*", "", doc)
    doc = doc[:1].upper() + doc[1:]
    out += [f"## {title}", ""] + ([doc, ""] if doc else [])
    out += ["| key | type | default | environment variable | description |", "|---|---|---|---|---|"]
    nested: list[tuple[type[BaseModel], tuple[str, ...], bool]] = []
    for name, info in model.model_fields.items():
        sub = sub_model(info.annotation)
        is_table = sub is not None and typing.get_origin(info.annotation) not in (list, tuple, set, dict)
        if is_table and sub is not None:
            nested.append((sub, (*path, name), False))
            continue
        variable = f"`{variable_name((*path, name))}`" if not listed else "(in the list's JSON)"
        kind = type_name(info.annotation)
        if sub is not None:
            kind = f"list of [[{'.'.join((*path, name))}]] tables"
            nested.append((sub, (*path, name), True))
        out.append(
            f"| `{name}` | {_cell(kind)} | {_cell(_default(info))} | {variable} | "
            f"{_cell(info.description or '')} |"
        )
    out.append("")
    for sub, sub_path, is_list in nested:
        _section(sub, sub_path, out, listed=listed or is_list)


def markdown() -> str:
    """docs/profile-reference.md: one table per profile section."""
    out = [
        "# Device profile reference",
        "",
        "Generated from the typed profile by `edgecascade agent config --markdown`; do not edit by hand",
        "(tests/edge/config/test_reference.py fails when this file and the code differ).",
        "",
        "Every key can be set in the profile (TOML) or overridden by its environment variable",
        "(`EDGECASCADE_<SECTION>__<KEY>`; lists and tables as JSON). Relative paths are relative to",
        "the profile file. Secret values (tokens, passwords) are never printed in errors.",
        "",
    ]
    _section(DeviceProfile, (), out)
    return "\n".join(out).rstrip() + "\n"
