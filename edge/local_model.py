"""The device's local model: a backend plus its model card (labels, features, version)."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgecascade.edge.config.profile import DeviceProfile
from edgecascade.shared.answer import ModelRef
from edgecascade.shared.backends import BackendOptions, ModelBackend, load_backend
from edgecascade.shared.backends.registry import EXTENSIONS
from edgecascade.shared.errors import ModelLoadError
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


def backend_options(profile: DeviceProfile) -> BackendOptions:
    return profile.runtime.backend_options()


@dataclass
class LocalModel:
    """A loaded model ready to answer: `probabilities(features)` for a batch of encoded rows."""

    backend: ModelBackend
    card: ModelCard
    path: Path
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    closed: bool = False

    def __post_init__(self) -> None:
        self.ref = ModelRef(self.card.name, self.card.version)
        self.input_name = self.card.features.input_name
        self._output = self.card.probabilities_output

    @classmethod
    def load(cls, path: Path, options: BackendOptions, backend: str | None = None) -> LocalModel:
        loaded = load_backend(path, options, backend)  # file and format problems first
        try:
            card = ModelCard.load_for(path)
        except ModelLoadError:
            loaded.close()
            raise
        names = [t.name for t in loaded.signature.outputs]
        if card.probabilities_output not in names:
            loaded.close()
            raise ModelLoadError(
                str(path), f"card names output {card.probabilities_output!r}, model has {names}"
            )
        log.info(
            "loaded model %s %s from %s (%s)", card.name, card.version, path, loaded.signature.describe()
        )
        return cls(loaded, card, path)

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        """(N, ...) encoded features -> (N, classes) float32 probabilities."""
        return self.backend.predict({self.input_name: features})[self._output]

    def close(self) -> None:
        """Free the runtime. Callers sharing the model hold `lock` around use and close."""
        if not self.closed:
            self.closed = True
            self.backend.close()
