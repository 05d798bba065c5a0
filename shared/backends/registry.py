"""Which backend serves which file. Optional runtimes are imported only when selected, so a
Raspberry Pi without onnxruntime still runs TFLite models."""

from __future__ import annotations

import importlib
import os
import stat
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator

from edgecascade.shared.backends.base import BackendOptions, ModelBackend
from edgecascade.shared.errors import EdgecascadeError, ModelLoadError, UnsupportedModelError

BACKENDS: dict[str, str] = {
    "tflite": "edgecascade.shared.backends.tflite:TFLiteBackend",
    "onnx": "edgecascade.shared.backends.onnx:OnnxBackend",
}

EXTENSIONS: dict[str, str] = {".tflite": "tflite", ".onnx": "onnx"}
SUPPORTED_EXTENSIONS = tuple(sorted(EXTENSIONS))


def _known_backend(name: str) -> str:
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; known backends: {', '.join(sorted(BACKENDS))}")
    return name


#: A backend name in config, cards and manifests: one of BACKENDS, spelled only there.
BackendName = Annotated[str, AfterValidator(_known_backend)]


def backend_name_for(path: Path, override: str | None = None) -> str:
    """The backend for `path`: `override` if given (from config), else by file extension."""
    if override:
        if override not in BACKENDS:
            raise UnsupportedModelError(
                f"unknown backend {override!r}; supported backends: {sorted(BACKENDS)}"
            )
        return override
    try:
        return EXTENSIONS[path.suffix.lower()]
    except KeyError:
        raise UnsupportedModelError(
            f"{path}: unsupported model extension {path.suffix!r}; supported: {', '.join(SUPPORTED_EXTENSIONS)}"
        ) from None


def load_backend(
    path: str | Path, options: BackendOptions | None = None, backend: str | None = None
) -> ModelBackend:
    """Load `path` with the matching backend. Raises `ModelLoadError` or `UnsupportedModelError`."""
    path = Path(path)
    name = backend_name_for(path, backend)
    _check_model_file(path)
    module_name, cls_name = BACKENDS[name].split(":")
    cls: type[ModelBackend] = getattr(importlib.import_module(module_name), cls_name)
    try:
        return cls(path, options or BackendOptions())
    except EdgecascadeError:
        raise
    except Exception as exc:  # a runtime's own error type: never let it escape raw
        raise ModelLoadError(str(path), f"{name} runtime refused it ({type(exc).__name__}: {exc})") from exc


def _check_model_file(path: Path) -> None:
    """A regular, non-empty file: a runtime handed a folder says something obscure, and one
    handed a FIFO or a device would wait for a writer or read it without end."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise ModelLoadError(str(path), "file not found") from None
    except OSError as exc:
        raise ModelLoadError(str(path), f"cannot read it ({exc.strerror or exc})") from None
    if stat.S_ISDIR(info.st_mode):
        raise ModelLoadError(str(path), "is a folder; expected a model file (.onnx or .tflite)")
    if not stat.S_ISREG(info.st_mode):
        raise ModelLoadError(
            str(path), "not a regular file (a device, pipe or socket); expected a model file"
        )
    if info.st_size == 0:
        raise ModelLoadError(str(path), "file is empty")
