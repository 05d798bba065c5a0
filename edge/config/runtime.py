"""[runtime] and [model]: how the local model is loaded and run."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from edgecascade.edge.config.base import ProfilePath, Section


class RuntimeSection(Section):
    threads: int = Field(
        1, ge=1, le=64, description="Interpreter threads (TFLite num_threads, ORT intra-op)."
    )
    backend_preference: list[Literal["tflite", "onnx"]] = Field(
        default_factory=lambda: ["tflite", "onnx"],  # type: ignore[arg-type]
        description="When model.path has no extension, the first backend with an artifact there wins.",
    )
    graph_optimization: Literal["disable", "basic", "extended", "all"] = Field(
        "all", description="ONNX Runtime graph optimization level."
    )
    tflite_runtime: Literal["litert", "tflite_runtime", "tensorflow"] | None = Field(
        None,
        description="Pin one TFLite runtime; default tries LiteRT, then tflite-runtime, then TensorFlow.",
    )
    warmup_runs: int = Field(2, ge=0, description="Inferences on zeros right after loading.")


class ModelSection(Section):
    name: str = Field("digits-edge", description="Model name; updates for this name replace it.")
    path: ProfilePath = Field(
        description="Factory model artifact (.tflite/.onnx), or a path without extension to pick "
        "by runtime.backend_preference. A model card <file>.card.json must sit beside it."
    )
    backend: Literal["tflite", "onnx"] | None = Field(
        None, description="Override the backend chosen from the file extension."
    )
