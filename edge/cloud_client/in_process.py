"""A cloud client that runs the cloud model in this process: for a store PC that hosts the
larger model itself, for offline evaluation (threshold tuning) and for benchmarks."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from edgecascade.edge.answer import ModelRef
from edgecascade.edge.cloud_client.base import CloudAnswer, CloudClient
from edgecascade.shared.backends import BackendOptions, load_backend
from edgecascade.shared.model_card import ModelCard


class InProcessCloudClient(CloudClient):
    def __init__(self, path: Path, options: BackendOptions | None = None) -> None:
        self.card = ModelCard.load_for(path)
        self.backend = load_backend(path, options)
        self.ref = ModelRef(self.card.name, self.card.version)
        self.calls = 0
        self._lock = threading.Lock()

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        """A batch of encoded rows -> (N, classes) probabilities."""
        with self._lock:
            return self.backend.predict({self.card.feature_spec().input_name: features})[
                self.card.scores_output()
            ]

    def infer(self, features: np.ndarray, *, request_id: str, raw_input: bytes | None = None) -> CloudAnswer:
        self.calls += 1
        return CloudAnswer(self.probabilities(features[None, ...])[0], self.ref)

    def close(self) -> None:
        self.backend.close()
