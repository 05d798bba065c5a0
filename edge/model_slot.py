"""The slot holding the model that serves right now, swapped atomically by model updates."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

from edge.local_model import LocalModel

log = logging.getLogger(__name__)


class ModelSlot:
    """Readers take the current model with `use()`; `swap()` installs a loaded and tested model
    and returns the previous one. In-flight requests finish on the model they started with,
    which is closed only after they release it, so a swap never fails a request."""

    def __init__(self, model: LocalModel) -> None:
        self._model = model
        self._locks: dict[int, threading.Lock] = {id(model): threading.Lock()}
        self._users: dict[int, int] = {id(model): 0}
        self._retired: dict[int, LocalModel] = {}
        self._state = threading.Lock()

    @property
    def current(self) -> LocalModel:
        return self._model

    @contextmanager
    def use(self) -> Iterator[tuple[LocalModel, threading.Lock]]:
        with self._state:
            model = self._model
            key = id(model)
            self._users[key] += 1
            lock = self._locks[key]
        try:
            yield model, lock
        finally:
            with self._state:
                self._users[key] -= 1
                done = key in self._retired and self._users[key] == 0
                if done:
                    self._finish_retire(key)

    def probabilities(self, features: np.ndarray) -> tuple[LocalModel, np.ndarray]:
        """Run the current model on a batch; returns the model that answered and its output."""
        with self.use() as (model, lock), lock:  # interpreters are not thread-safe
            return model, model.probabilities(features)

    def swap(self, new: LocalModel) -> LocalModel:
        """Make `new` current. The old model is closed once its last in-flight request ends."""
        with self._state:
            old = self._model
            self._locks[id(new)] = threading.Lock()
            self._users[id(new)] = 0
            self._model = new
            self._retired[id(old)] = old
            if self._users[id(old)] == 0:
                self._finish_retire(id(old))
        log.info(
            "model swapped: %s %s -> %s %s", old.card.name, old.card.version, new.card.name, new.card.version
        )
        return old

    def _finish_retire(self, key: int) -> None:
        model = self._retired.pop(key)
        del self._locks[key], self._users[key]
        model.close()

    def close(self) -> None:
        with self._state:
            self._model.close()
