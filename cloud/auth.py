"""Per-device bearer tokens. Tokens are never logged; comparison is constant-time.

Tokens file (TOML)::

    store-12 = "s3cret"                 # may call every model
    [kiosk-3]
    token = "an0ther"
    models = ["digits-cloud"]           # may call only these (403 for others)

Environment: `EDGECASCADE_SERVE__TOKENS="store-12=s3cret,kiosk-3=an0ther"` (all models)."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from pathlib import Path

from edgecascade.shared.errors import AuthError, ConfigError
from edgecascade.shared.toml_files import read_toml


@dataclass(frozen=True)
class DeviceGrant:
    device_id: str
    token: bytes
    models: frozenset[str] | None  # None: every model


class TokenAuthenticator:
    """Checks `Authorization: Bearer <token>` values. Health and metadata-free paths skip it."""

    def __init__(self, grants: list[DeviceGrant]) -> None:
        self._grants = grants

    def __len__(self) -> int:
        return len(self._grants)

    def authenticate(self, authorization: str | None, model: str | None = None) -> str:
        """The caller's device id. Raises AuthError (401) for a missing or unknown token and
        AuthError(forbidden=True) (403) when the device may not call `model`."""
        if not authorization:
            raise AuthError("missing bearer token (Authorization: Bearer <token>)")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthError("Authorization must be 'Bearer <token>'")
        given = token.strip().encode("utf-8")
        found: DeviceGrant | None = None
        for grant in self._grants:  # no early exit: the time taken does not depend on which matched
            if hmac.compare_digest(grant.token, given):
                found = grant
        if found is None:
            raise AuthError("unknown bearer token")
        if model is not None and found.models is not None and model not in found.models:
            raise AuthError(f"device {found.device_id!r} may not call model {model!r}", forbidden=True)
        return found.device_id

    def authorize(self, device_id: str, model: str | None = None) -> str:
        """A caller identified by a client certificate: its grant, where it has one, limits
        its models as for a token (AuthError 403). Returns the device id."""
        for grant in self._grants:
            if grant.device_id == device_id and model is not None and grant.models is not None:
                if model not in grant.models:
                    raise AuthError(f"device {device_id!r} may not call model {model!r}", forbidden=True)
        return device_id


class NoAuth:
    """`--no-auth`: every caller is 'anonymous' (local demo only)."""

    def authenticate(self, authorization: str | None, model: str | None = None) -> str:
        return "anonymous"

    def authorize(self, device_id: str, model: str | None = None) -> str:
        return device_id


def load_grants(tokens_file: Path | None, env_value: str | None) -> list[DeviceGrant]:
    """Grants from the tokens file and the env value; raises ConfigError naming file and key."""
    grants: list[DeviceGrant] = []
    if tokens_file is not None:
        grants.extend(_from_file(tokens_file))
    if env_value:
        for i, pair in enumerate(p for p in env_value.split(",") if p.strip()):
            device, sep, token = pair.partition("=")
            if not sep or not device.strip() or not token.strip():
                raise ConfigError(
                    "expected device=token pairs separated by commas", key=f"EDGECASCADE_SERVE__TOKENS[{i}]"
                )
            grants.append(DeviceGrant(device.strip(), token.strip().encode("utf-8"), None))
    seen: set[str] = set()
    for grant in grants:
        if grant.device_id in seen:
            raise ConfigError(f"device {grant.device_id!r} has two tokens", key=grant.device_id)
        seen.add(grant.device_id)
    return grants


def _from_file(path: Path) -> list[DeviceGrant]:
    doc = read_toml(path, what="tokens file")
    grants = []
    for device, value in doc.items():
        token: object
        models: object
        if isinstance(value, str):
            token, models = value, None
        elif isinstance(value, dict):
            token = value.get("token")
            models = value.get("models")
            unknown = set(value) - {"token", "models"}
            if unknown:
                raise ConfigError(
                    f"unknown keys {sorted(unknown)}; expected token, models", file=str(path), key=device
                )
            if models is not None and not (
                isinstance(models, list) and all(isinstance(m, str) for m in models)
            ):
                raise ConfigError(
                    "models must be a list of model names", file=str(path), key=f"{device}.models"
                )
        else:
            raise ConfigError('expected device = "token" or a [device] table', file=str(path), key=device)
        if not isinstance(token, str) or not token:
            raise ConfigError("token must be a non-empty string", file=str(path), key=f"{device}.token")
        allowed = frozenset(models) if isinstance(models, list) else None
        grants.append(DeviceGrant(device, token.encode("utf-8"), allowed))
    return grants
