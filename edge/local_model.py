"""The device's local model: a backend plus its model card (task, pipeline, labels, version),
the card checked against the model's own signature on every load."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgecascade.edge.answer import ModelRef
from edgecascade.edge.config.profile import DeviceProfile
from edgecascade.shared.backends import BackendOptions, ModelBackend, load_backend
from edgecascade.shared.backends.registry import EXTENSIONS
from edgecascade.shared.card_check import check_card
from edgecascade.shared.errors import EdgecascadeError, InputError, ModelLoadError
from edgecascade.shared.model_card import ModelCard

log = logging.getLogger(__name__)


def resolve_artifact(path: Path, preference: list[str]) -> Path:
    """`path` itself if it has an extension, else the first `<path>.<ext>` that exists, in the
    order of the profile's backend preference."""
    if path.suffix:
        return path
    by_backend = {backend: ext for ext, backend in EXTENSIONS.items()}
    candidates = [path.with_name(path.name + by_backend[b]) for b in preference]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise ModelLoadError(str(path), "no artifact found; looked for " + ", ".join(str(c) for c in candidates))


#: Log-probabilities stand in for logits; a probability of 0 (common in quantized outputs)
#: becomes this floor so that a temperature can still soften it.
PROBABILITY_FLOOR = 1e-7


def as_logits(scores: np.ndarray, logits: bool) -> np.ndarray:
    """A classifier's (N, classes) scores as float32 logits: themselves if they are logits,
    else log(max(p, PROBABILITY_FLOOR)); softmax of the result is the model's distribution."""
    scores = scores.astype(np.float32, copy=False)
    return scores if logits else np.log(np.maximum(scores, np.float32(PROBABILITY_FLOOR)))


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float32, shifted by the row maximum so large logits do not overflow."""
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (shifted / shifted.sum(axis=1, keepdims=True)).astype(np.float32, copy=False)


def backend_options(profile: DeviceProfile) -> BackendOptions:
    return profile.runtime.backend_options()


@dataclass
class LocalModel:
    """A loaded model ready to answer: `run(inputs)` for any model, `probabilities(features)`
    for a classifier's batch of encoded rows."""

    backend: ModelBackend
    card: ModelCard
    path: Path
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    closed: bool = False

    def __post_init__(self) -> None:
        self.ref = ModelRef(self.card.name, self.card.version)
        self.input_name = self.card.features.input_name if self.card.features else self.card.inputs[0].name
        self._output = self.card.probabilities_output or self.card.outputs[0].name
        self._softmax = self.card.logits
        calibration = self.card.calibration
        self._temperature = None if calibration is None else np.float32(calibration.temperature)
        out = next((t for t in self.backend.signature.outputs if t.name == self._output), None)
        # [N, 1, C]-style outputs are flattened to [N, C]; [N, C] is returned as it is.
        self._flatten = out is not None and len(out.shape) != 2

    @classmethod
    def load(cls, path: Path, options: BackendOptions, backend: str | None = None) -> LocalModel:
        """Load the artifact and its card; raises ModelLoadError naming the file (or the card
        and the field) when either is unusable or they do not match."""
        loaded = load_backend(path, options, backend)  # file and format problems first
        try:
            card = ModelCard.load_for(path)
            check_card(card, loaded.signature, ModelCard.path_for(path))
        except ModelLoadError:
            loaded.close()
            raise
        log.info(
            "loaded model %s %s from %s (%s)", card.name, card.version, path, loaded.signature.describe()
        )
        return cls(loaded, card, path)

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        """(N, ...) encoded features -> (N, classes) float32 probabilities (softmax applied
        when the card says the model gives logits; with a card calibration, softmax of the
        logits divided by its temperature)."""
        scores = self._scores(features)
        if self._temperature is not None:
            return softmax(as_logits(scores, self._softmax) / self._temperature)
        if self._softmax:
            scores = softmax(scores)
        if scores.dtype != np.float32:
            scores = scores.astype(np.float32)
        return scores

    def logits(self, features: np.ndarray) -> np.ndarray:
        """(N, classes) float32 uncalibrated logits: the model's own when the card says logits,
        else its log-probabilities. Calibration (tools/calibration.py) fits a temperature on them."""
        return as_logits(self._scores(features), self._softmax)

    def _scores(self, features: np.ndarray) -> np.ndarray:
        scores = self._predict({self.input_name: features})[self._output]
        if self._flatten:
            scores = scores.reshape(scores.shape[0], -1)
        if scores.dtype.kind in "iu":
            # Quantized scores the backend could not dequantize (no scale in the model): map
            # the integer range onto 0..1, as full-range uint8/int8 classifier outputs mean.
            info = np.iinfo(scores.dtype)
            scores = (scores.astype(np.float32) - np.float32(info.min)) / np.float32(
                int(info.max) - int(info.min)
            )
        return scores

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Every output of the model, by name, for inputs already checked by the pipeline."""
        return self._predict(inputs)

    def run_prepared(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """`run` for every input prepared against this model's signature by the input pipeline
        (shared/input_pipeline: names, shapes, dtypes), which the backend need not check again."""
        return self._predict(inputs, prepared=True)

    def _predict(self, inputs: dict[str, np.ndarray], prepared: bool = False) -> dict[str, np.ndarray]:
        try:
            return self.backend.predict(inputs, prepared=prepared)
        except EdgecascadeError:
            raise
        except Exception as exc:  # the runtimes raise their own untyped errors
            # Inputs that fit the signature can still be refused inside the graph (a dynamic
            # size the model cannot take): the caller's input, so a 400 with the runtime's words.
            raise InputError(f"model {self.card.name!r} could not run on these inputs: {exc}") from None

    def close(self) -> None:
        """Free the runtime. Callers sharing the model hold `lock` around use and close."""
        if not self.closed:
            self.closed = True
            self.backend.close()
