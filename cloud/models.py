"""Loaded cloud models: every version in the repository, each behind its own batcher."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from edgecascade.cloud.batching import AdaptiveBatcher
from edgecascade.cloud.repository import ModelEntry, ModelSettings, VersionEntry, scan_repository, version_key
from edgecascade.shared.backends.base import (
    STRING_DTYPE,
    BackendOptions,
    ModelBackend,
    OnnxProvider,
    Signature,
    TensorSpec,
)
from edgecascade.shared.backends.registry import load_backend
from edgecascade.shared.detection.decoders import Decoder, decoder_for
from edgecascade.shared.detection.served import SERVED_OUTPUTS, to_served
from edgecascade.shared.errors import InputError, NotFoundError, ProtocolError
from edgecascade.shared.input_pipeline import prepare_input
from edgecascade.shared.model_card import ModelCard
from edgecascade.shared.v2 import DATATYPES, PLATFORMS, MetadataTensor, ModelMetadata

log = logging.getLogger(__name__)

_DATATYPE_OF = {str(dtype): name for name, dtype in DATATYPES.items()}


def backend_options(settings: ModelSettings) -> BackendOptions:
    """Threads and execution providers (in order of preference) from a model's model.toml."""
    providers = tuple(
        OnnxProvider(p, settings.provider_options.get(p, {})) for p in settings.execution_providers
    )
    return BackendOptions(threads=settings.threads, onnx_providers=providers)


def batchable(sig: Signature) -> bool:
    """Requests can be merged along axis 0: every input and output has a variable leading
    (batch) axis and no other variable size, and inputs are not strings."""
    tensors = (*sig.inputs, *sig.outputs)
    return all(
        len(t.shape) >= 1 and t.shape[0] < 0 and all(d >= 0 for d in t.shape[1:]) for t in tensors
    ) and all(t.dtype != STRING_DTYPE for t in sig.inputs)


def _batch_size(model: str, asked: int, sig: Signature) -> int:
    """The batch size asked for, or 1 (with a log line) when the model's tensors cannot be merged."""
    if asked > 1 and not batchable(sig):
        log.info(
            "model %s: requests are not merged (its tensors have no variable leading batch axis, "
            "or other variable sizes): %s",
            model,
            sig.describe(),
        )
        return 1
    return asked


def _detection_decoding(card: ModelCard | None) -> tuple[Decoder | None, list[TensorSpec]]:
    """The decoder and the standard decoded outputs of a detector whose card has a detection
    section (shared/detection/served.py); none for any other model."""
    if card is None or card.task != "detection" or card.detection is None:
        return None, []
    return decoder_for(card.detection.format), [
        TensorSpec(n, shape, str(DATATYPES[d])) for n, d, shape in SERVED_OUTPUTS
    ]


class ServedModel:
    """One model version: `instances` backends, a batcher over them, and its V2 metadata."""

    def __init__(
        self,
        name: str,
        entry: VersionEntry,
        settings: ModelSettings,
        on_batch: Callable[[str, int], None] | None = None,
        debug_delay_s: float = 0.0,
    ) -> None:
        self.name = name
        self.debug_delay_s = debug_delay_s
        self.version = entry.version
        self.card: ModelCard | None = entry.card
        options = backend_options(settings)
        self.backends: list[ModelBackend] = [
            load_backend(entry.artifact, options) for _ in range(settings.instances)
        ]
        self.signature = self.backends[0].signature
        self.accelerator = self.signature.accelerator
        self.platform = PLATFORMS.get(self.backends[0].name, self.backends[0].name)
        self.model_outputs = [t.name for t in self.signature.outputs]
        # A detector whose card has a detection section also serves the standard decoded
        # outputs (shared/detection/served.py): devices ask for those, whatever its own format.
        self._decoder, self.decoded_outputs = _detection_decoding(self.card)
        self.output_names = self.model_outputs + [t.name for t in self.decoded_outputs]
        # Inputs with an image pipeline in the card also take BYTES images (PNG, JPEG, ...),
        # prepared here by the card's pipeline: a device can send its frame whatever its own
        # model's input size.
        self.image_inputs = {
            spec.name: (spec, card_input)
            for spec in self.signature.inputs
            for card_input in (self.card.inputs if self.card is not None else [])
            if card_input.name == spec.name and card_input.pipeline is not None
        }
        self.batcher = AdaptiveBatcher(
            f"{name}:{entry.version}",
            [self._predictor(b) for b in self.backends],
            max_batch_size=_batch_size(f"{name} {entry.version}", settings.max_batch_size, self.signature),
            max_queue_delay_s=settings.max_queue_delay_ms / 1000.0,
            max_queue_size=settings.max_queue_size,
            on_batch=(lambda n: on_batch(name, n)) if on_batch else None,
        )

    def _predictor(self, backend: ModelBackend) -> Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]:
        if self.debug_delay_s <= 0:
            return backend.predict

        def slowed(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            time.sleep(self.debug_delay_s)  # in the model's thread: a slow model, as clients see it
            return backend.predict(inputs)

        return slowed

    def prepare_images(self, inputs: dict[str, np.ndarray], max_pixels: int) -> dict[str, np.ndarray]:
        """`inputs` with each BYTES image of an image input prepared by the card's pipeline;
        ProtocolError naming the input's data for one that does not decode or fit."""
        if not self.image_inputs:
            return inputs
        out = dict(inputs)
        for i, (name, arr) in enumerate(inputs.items()):
            known = self.image_inputs.get(name)
            if known is not None and arr.dtype == object:
                spec, card_input = known
                try:
                    out[name] = prepare_input(arr, card_input, spec, max_pixels=max_pixels)
                except InputError as exc:
                    raise ProtocolError(
                        f"{exc} (a BYTES input of model {self.name} is an encoded image for its card's pipeline)",
                        field=f"inputs[{i}].data",
                    ) from None
        return out

    def decoded(self, outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The standard decoded detection outputs of the model's own `outputs` (detectors only)."""
        assert self._decoder is not None and self.card is not None and self.card.detection is not None
        return to_served(self._decoder(outputs, self.card.detection, self.card.labels))

    def check_inputs(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Arrays the model accepts; raises SignatureMismatchError stating the expected signature."""
        return self.backends[0].check_inputs(inputs)

    async def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return await self.batcher.predict(inputs)

    async def close(self) -> None:
        await self.batcher.close()
        for backend in self.backends:
            backend.close()


class ModelRegistry:
    """Every model and version of a repository, loaded at start-up (a bad model stops start-up
    with a ModelLoadError naming the file, rather than failing requests later)."""

    def __init__(
        self,
        entries: list[ModelEntry],
        on_batch: Callable[[str, int], None] | None = None,
        debug_delay_s: float = 0.0,
    ) -> None:
        self.entries = {e.name: e for e in entries}
        self._models: dict[tuple[str, str], ServedModel] = {}
        for entry in entries:
            for version in entry.versions:
                self._models[(entry.name, version.version)] = ServedModel(
                    entry.name, version, entry.settings, on_batch, debug_delay_s
                )
                log.info(
                    "loaded model %s version %s from %s on %s",
                    entry.name,
                    version.version,
                    version.artifact,
                    self._models[(entry.name, version.version)].accelerator,
                )

    @classmethod
    def from_repository(
        cls, root: Path, on_batch: Callable[[str, int], None] | None = None, debug_delay_s: float = 0.0
    ) -> ModelRegistry:
        """Load every model under `root`; `debug_delay_s` slows every model call (fault tests)."""
        return cls(scan_repository(root), on_batch, debug_delay_s)

    def get(self, name: str, version: str | None = None) -> ServedModel:
        """The model version (the default one when `version` is None); raises NotFoundError."""
        entry = self.entries.get(name)
        if entry is None:
            raise NotFoundError(f"unknown model {name!r}; served models: {sorted(self.entries)}")
        wanted = version or entry.default_version
        model = self._models.get((name, wanted))
        if model is None:
            known = [v.version for v in entry.versions]
            raise NotFoundError(f"model {name!r} has no version {wanted!r}; versions: {known}")
        return model

    def metadata(self, name: str, version: str | None = None) -> ModelMetadata:
        model = self.get(name, version)
        entry = self.entries[name]
        params: dict[str, object] = {
            "default_version": entry.default_version,
            "accelerator": model.accelerator,
        }
        if model.card is not None:
            params.update(labels=model.card.labels, heldout_accuracy=model.card.heldout_accuracy)
        return ModelMetadata(
            name=name,
            versions=sorted((v.version for v in entry.versions), key=version_key),
            platform=model.platform,
            inputs=[_tensor(t) for t in model.signature.inputs],
            outputs=[_tensor(t) for t in (*model.signature.outputs, *model.decoded_outputs)],
            parameters=params,
        )

    async def close(self) -> None:
        for model in self._models.values():
            await model.close()


def _tensor(spec: TensorSpec) -> MetadataTensor:
    return MetadataTensor(
        name=spec.name, datatype=_DATATYPE_OF.get(spec.dtype, "BYTES"), shape=list(spec.shape)
    )
