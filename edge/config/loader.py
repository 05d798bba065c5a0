"""Read a TOML profile, apply EDGECASCADE_* environment overrides, validate, explain errors."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from edgecascade.edge.config.profile import DeviceProfile
from edgecascade.shared.errors import ConfigError

ENV_PREFIX = "EDGECASCADE_"


def _env_overrides(environ: dict[str, str]) -> dict[str, Any]:
    """EDGECASCADE_DEVICE_ID=x -> {"device_id": "x"}; EDGECASCADE_CLOUD__TOKEN=y -> {"cloud": {"token": "y"}}."""
    tree: dict[str, Any] = {}
    for key, value in environ.items():
        if not key.startswith(ENV_PREFIX) or key == ENV_PREFIX + "CONFIG":
            continue
        parts = key[len(ENV_PREFIX) :].lower().split("__")
        node = tree
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return tree


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        out[key] = (
            _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
        )
    return out


def format_validation_error(file: str, exc: ValidationError) -> ConfigError:
    first = exc.errors()[0]
    key = ".".join(str(p) for p in first["loc"]) or "(top level)"
    lines = [
        f"{'.'.join(str(p) for p in e['loc']) or '(top level)'}: {e['msg']}"
        + (f" (got {e['input']!r})" if e["type"] != "missing" and not isinstance(e["input"], dict) else "")
        for e in exc.errors()
    ]
    return ConfigError("invalid profile:\n  " + "\n  ".join(lines), file=file, key=key)


def load_profile(path: str | Path, environ: dict[str, str] | None = None) -> DeviceProfile:
    """Load and validate a profile. Raises ConfigError naming the file, the key and what was expected."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError("profile file not found", file=str(path)) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}", file=str(path)) from exc
    data = _merge(raw, _env_overrides(dict(os.environ) if environ is None else environ))
    try:
        return DeviceProfile.model_validate(data, context={"base_dir": path.parent.resolve()})
    except ValidationError as exc:
        raise format_validation_error(str(path), exc) from None
