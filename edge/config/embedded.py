"""The profile `agent run --model PATH` and `agent predict --model PATH` use when no profile
file is given: the named models, the local API on a port, nothing else (no broker, cloud,
lookups, deferral or updates), state in a per-user temporary folder."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from edgecascade.edge.config.profile import DeviceProfile
from edgecascade.shared.errors import ConfigError
from edgecascade.shared.model_card import ModelCard


def embedded_profile(models: list[Path], *, port: int = 8080, host: str = "127.0.0.1") -> DeviceProfile:
    """A profile serving `models` (each with its card beside it) under their card names."""
    entries = []
    for path in models:
        card = ModelCard.load_for(path)  # ModelLoadError naming the card, or how to write one
        entries.append({"name": card.name, "path": str(path.resolve())})
    names = [e["name"] for e in entries]
    if len(set(names)) != len(names):
        raise ConfigError(
            f"two --model files have the same card name: {names}; rename one with `models import --name`"
        )
    data_dir = Path(tempfile.gettempdir()) / f"edgecascade-{os.getuid()}"
    return DeviceProfile.model_validate(
        {
            "profile": "embedded",
            "device_id": "local",
            "data_dir": str(data_dir),
            "memory_budget_mb": 1024,
            "models": entries,
            "api": {"host": host, "port": port},
            "deferred": {"enabled": False},
            "telemetry": {"enabled": False},
            "lookup": {"cache": {"enabled": False}},
        }
    )
