"""The cloud model repository on disk, and the demo repository built from the demo models.

Layout (Triton's)::

    <repo>/<model>/model.toml                      default_version, batching, instances (optional)
    <repo>/<model>/<version>/model.onnx            the artifact (any extension load_backend knows)
    <repo>/<model>/<version>/model.onnx.card.json  its model card (optional)

Inputs, outputs, datatypes and shapes are read from the model itself; neither file is needed.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from edgecascade.shared.backends.registry import EXTENSIONS
from edgecascade.shared.errors import ConfigError
from edgecascade.shared.model_card import ModelCard
from edgecascade.shared.toml_files import read_toml

MODEL_TOML = "model.toml"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class ModelSettings(BaseModel):
    """`<repo>/<model>/model.toml`: how one model is served. Every key is optional."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    default_version: str | None = Field(
        default=None, description="Version served at /v2/models/<name>; the highest version if unset."
    )
    max_batch_size: int = Field(
        default=16,
        ge=1,
        le=4096,
        description="Most requests merged into one model call; 1 disables batching.",
    )
    max_queue_delay_ms: float = Field(
        default=2.0, ge=0, le=10_000, description="Longest a request waits for others to join its batch."
    )
    max_queue_size: int = Field(
        default=512, ge=1, description="Requests waiting beyond this are refused with 503 (overloaded)."
    )
    instances: int = Field(
        default=1, ge=1, le=64, description="Model copies run in parallel threads per worker."
    )
    threads: int = Field(default=1, ge=1, le=64, description="Intra-op threads of each model instance.")
    execution_providers: list[Annotated[str, StringConstraints(pattern=r"^[A-Za-z]+ExecutionProvider$")]] = (
        Field(
            default_factory=list,
            description="ONNX Runtime execution providers in order of preference (TensorrtExecutionProvider, "
            "CUDAExecutionProvider, OpenVINOExecutionProvider, ...); the first that loads is used, the CPU "
            "provider is the last resort. Empty: the CPU provider.",
        )
    )
    provider_options: dict[str, dict[str, str]] = Field(
        default_factory=dict,
        description='Options per provider name, e.g. { CUDAExecutionProvider = { device_id = "0" } }.',
    )


@dataclass(frozen=True)
class VersionEntry:
    version: str
    artifact: Path
    card: ModelCard | None


@dataclass(frozen=True)
class ModelEntry:
    """One model folder: its settings and versions (ordered oldest to newest)."""

    name: str
    settings: ModelSettings
    versions: tuple[VersionEntry, ...]

    @property
    def default_version(self) -> str:
        return self.settings.default_version or self.versions[-1].version


def version_key(version: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key: numeric parts compare as numbers (1.10.0 > 1.9.0), others as text."""
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in re.split(r"[.\-+]", version))


def scan_repository(root: Path) -> list[ModelEntry]:
    """Read every model folder under `root`. Raises ConfigError naming the file and key."""
    if not root.is_dir():
        raise ConfigError("model repository folder not found", file=str(root))
    models = [_scan_model(folder) for folder in sorted(root.iterdir()) if folder.is_dir()]
    if not models:
        raise ConfigError("no model folders (<repo>/<model>/<version>/model.onnx)", file=str(root))
    return models


def _scan_model(folder: Path) -> ModelEntry:
    if not _NAME.match(folder.name):
        raise ConfigError("model folder names may use letters, digits, '.', '_' and '-'", file=str(folder))
    settings = _read_settings(folder / MODEL_TOML)
    versions = []
    for sub in sorted((p for p in folder.iterdir() if p.is_dir()), key=lambda p: version_key(p.name)):
        artifacts = [p for p in sub.iterdir() if p.stem == "model" and p.suffix in EXTENSIONS]
        if len(artifacts) != 1:
            raise ConfigError(
                f"expected exactly one model file (model{{{','.join(sorted(EXTENSIONS))}}}), found {len(artifacts)}",
                file=str(sub),
            )
        artifact = artifacts[0]
        card = ModelCard.load_for(artifact) if ModelCard.path_for(artifact).exists() else None
        versions.append(VersionEntry(sub.name, artifact, card))
    if not versions:
        raise ConfigError("no version folders", file=str(folder))
    names = [v.version for v in versions]
    if settings.default_version is not None and settings.default_version not in names:
        raise ConfigError(
            f"version {settings.default_version!r} is not one of {names}",
            file=str(folder / MODEL_TOML),
            key="default_version",
        )
    return ModelEntry(folder.name, settings, tuple(versions))


def _read_settings(path: Path) -> ModelSettings:
    if not path.exists():
        return ModelSettings()
    doc = read_toml(path, what="model settings file")
    try:
        return ModelSettings.model_validate(doc)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err["loc"])
        raise ConfigError(f"{err['msg']} (got {err.get('input')!r})", file=str(path), key=key) from None


def add_version(
    repo: Path, model: str, version: str, artifact: Path, settings: ModelSettings | None = None
) -> Path:
    """Copy `artifact` (and its card, renamed to match) in as `<repo>/<model>/<version>/`.
    Writes model.toml when `settings` is given. Returns the version folder."""
    dest = repo / model / version
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / f"model{artifact.suffix}"
    shutil.copyfile(artifact, target)
    if ModelCard.path_for(artifact).exists():
        card = ModelCard.load_for(artifact)
        card.model_copy(update={"file": target.name, "version": version}).save_beside(target)
    if settings is not None:
        write_settings(repo / model, settings)
    return dest


def write_settings(model_folder: Path, settings: ModelSettings) -> Path:
    lines = [
        f"{key} = {_toml_value(value)}"
        for key, value in settings.model_dump(exclude_none=True, exclude_defaults=False).items()
    ]
    path = model_folder / MODEL_TOML
    path.write_text("\n".join(lines) + "\n")
    return path


def _toml_value(value: object) -> str:
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_toml_value(str(k))} = {_toml_value(v)}" for k, v in value.items()) + " }"
    return str(value).lower() if isinstance(value, bool) else str(value)


DEMO_MODEL = "digits-cloud"
DEMO_VERSION = "1.0.0"


def seed_demo_repository(
    dest: Path,
    models_dir: Path,
    *,
    settings: ModelSettings | None = None,
    extra_versions: tuple[str, ...] = (),
) -> Path:
    """Lay out `models_dir/digits_cloud.onnx` as model `digits-cloud` version 1.0.0 (default),
    plus `extra_versions` of the same artifact side by side. Returns `dest`."""
    source = models_dir / "digits_cloud.onnx"
    settings = (settings or ModelSettings()).model_copy(update={"default_version": DEMO_VERSION})
    for version in (DEMO_VERSION, *extra_versions):
        add_version(dest, DEMO_MODEL, version, source)
    write_settings(dest / DEMO_MODEL, settings)
    return dest
