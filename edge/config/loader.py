"""Read a TOML profile, apply EDGECASCADE_* environment overrides, validate, explain errors.

The environment scheme is shared/config_env.py's; errors are explained by
shared/config_errors.py, the same as every other command's."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from edgecascade.edge.config.profile import DeviceProfile
from edgecascade.shared.config_env import read_environment, warn_unknown
from edgecascade.shared.config_errors import explain_validation_error
from edgecascade.shared.config_files import check_files
from edgecascade.shared.errors import ConfigError
from edgecascade.shared.toml_files import read_toml

#: Names the profile `agent run` and `agent predict` use when --config is not given.
CONFIG_ENV = "EDGECASCADE_CONFIG"

COMMAND = "edgecascade agent"


def profile_path(given: Path | None, environ: Mapping[str, str] | None = None) -> Path:
    """--config if given, else the file EDGECASCADE_CONFIG names; ConfigError if neither."""
    if given is not None:
        return given
    named = (os.environ if environ is None else environ).get(CONFIG_ENV, "").strip()
    if not named:
        raise ConfigError(f"no profile: give --config PROFILE or set {CONFIG_ENV}")
    if not Path(named).exists():
        raise ConfigError(f"profile file not found: {named}", key=CONFIG_ENV)
    if not Path(named).is_file():
        raise ConfigError(f"not a regular file (a folder, device or pipe): {named}", key=CONFIG_ENV)
    return Path(named)


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        out[key] = (
            _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
        )
    return out


def load_profile(
    path: str | Path, environ: Mapping[str, str] | None = None, *, check_files_exist: bool = True
) -> DeviceProfile:
    """Load and validate a profile, then check the files it names (certificates, keys).

    Raises ConfigError naming the file and key (or the environment variable) and what was
    expected. Unknown EDGECASCADE_* variables are warned about once and ignored."""
    path = Path(path)
    raw = read_toml(path, what="profile file")
    env = read_environment(DeviceProfile, os.environ if environ is None else environ)
    warn_unknown(env, COMMAND)
    try:
        profile = DeviceProfile.model_validate(
            _merge(raw, env.values), context={"base_dir": path.parent.resolve()}
        )
    except ValidationError as exc:
        raise explain_validation_error(
            exc, what="invalid profile", model=DeviceProfile, file=str(path), sources=env.sources
        ) from None
    if check_files_exist:
        check_files(profile, file=str(path), sources=env.sources)
    return profile
