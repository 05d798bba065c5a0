"""[runtime] and [model]: how the local model is loaded and run, and on which accelerator."""

from dataclasses import replace
from typing import Literal, Self

from pydantic import Field, model_validator

from edgecascade.edge.config.base import ModelName, ProfilePath, Section
from edgecascade.shared.backends.base import BackendOptions, OnnxProvider, TFLiteDelegate
from edgecascade.shared.backends.registry import BACKENDS, BackendName


class OnnxProviderSettings(Section):
    """One ONNX Runtime execution provider, e.g. `{ name = "CUDAExecutionProvider" }`."""

    name: str = Field(
        pattern=r"^[A-Za-z]+ExecutionProvider$",
        description="Provider name as onnxruntime spells it: TensorrtExecutionProvider, "
        "CUDAExecutionProvider, OpenVINOExecutionProvider, CPUExecutionProvider, ...",
    )
    options: dict[str, str] = Field(
        default_factory=dict, description='Provider options, e.g. { device_id = "0" } for CUDA.'
    )


class DelegateSettings(Section):
    """One TFLite delegate: XNNPACK (the CPU default), an external library, or no delegate."""

    kind: Literal["xnnpack", "external", "builtin"] = Field(
        description="xnnpack: LiteRT's CPU delegate; external: a delegate library such as an Edge "
        "TPU's libedgetpu.so.1; builtin: the reference kernels without any delegate."
    )
    library: ProfilePath | None = Field(None, description="Delegate library path (kind = external).")
    options: dict[str, str] = Field(
        default_factory=dict, description='Options passed to the external delegate (e.g. device = "usb").'
    )
    threads: int | None = Field(
        None, ge=1, le=64, description="Threads for this delegate; runtime.threads if unset."
    )

    @model_validator(mode="after")
    def _library_for_external(self) -> Self:
        if self.kind == "external" and self.library is None:
            raise ValueError("an external delegate needs `library` (the delegate's .so path)")
        if self.kind != "external" and self.library is not None:
            raise ValueError(f"`library` is only for kind = 'external', not {self.kind!r}")
        return self


class AcceleratorSettings(Section):
    """Accelerators in order of preference, per model. The first that loads is used and named in
    the log, model metadata and metrics; a missing one falls back with one log line."""

    onnx_providers: list[OnnxProviderSettings] = Field(
        default_factory=list,
        description="ONNX Runtime execution providers to try in order; the CPU provider is always "
        "the last resort. Empty: the CPU provider.",
    )
    tflite_delegates: list[DelegateSettings] = Field(
        default_factory=list,
        description="TFLite delegates to try in order; the runtime's default (XNNPACK on LiteRT) "
        "is the last resort. Empty: the default.",
    )

    def apply(self, options: BackendOptions) -> BackendOptions:
        """`options` with these accelerators (a new object; BackendOptions is frozen)."""
        return replace(
            options,
            onnx_providers=tuple(OnnxProvider(p.name, dict(p.options)) for p in self.onnx_providers),
            tflite_delegates=tuple(
                TFLiteDelegate(d.kind, str(d.library) if d.library else None, dict(d.options), d.threads)
                for d in self.tflite_delegates
            ),
        )


class RuntimeSection(Section):
    threads: int = Field(
        1, ge=1, le=64, description="Interpreter threads (TFLite num_threads, ORT intra-op)."
    )
    backend_preference: list[BackendName] = Field(
        default_factory=lambda: list(BACKENDS),
        description="When model.path has no extension, the first backend with an artifact there wins.",
    )
    graph_optimization: Literal["disable", "basic", "extended", "all"] = Field(
        "all", description="ONNX Runtime graph optimization level."
    )
    tflite_runtime: Literal["litert", "tflite_runtime", "tensorflow"] | None = Field(
        None,
        description="Pin one TFLite runtime; default tries LiteRT, then tflite-runtime, then TensorFlow.",
    )
    warmup_runs: int = Field(
        2,
        ge=0,
        description="Inferences right after loading, on the card's sample inputs; without them on "
        "zeros only when every input is a static float tensor (else warm-up is skipped).",
    )
    accelerators: AcceleratorSettings = Field(
        default_factory=AcceleratorSettings,
        description="Default accelerators for every model; a [[models]] entry may set its own.",
    )

    def backend_options(self) -> BackendOptions:
        """BackendOptions for a model without accelerators of its own."""
        extra: dict[str, str] = {"tflite_runtime": self.tflite_runtime} if self.tflite_runtime else {}
        base = BackendOptions(
            threads=self.threads,
            graph_optimization=self.graph_optimization,
            warmup_runs=self.warmup_runs,
            extra=extra,
        )
        return self.accelerators.apply(base)


class ModelSection(Section):
    name: ModelName = Field("digits-edge", description="Model name; updates for this name replace it.")
    path: ProfilePath = Field(
        description="Factory model artifact (.tflite/.onnx), or a path without extension to pick "
        "by runtime.backend_preference. A model card <file>.card.json must sit beside it."
    )
    backend: BackendName | None = Field(
        None, description="Override the backend chosen from the file extension."
    )
