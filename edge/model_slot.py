"""The slot holding the model that serves right now, swapped atomically by model updates."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

import numpy as np

from edgecascade.edge.answer import ModelRef
from edgecascade.edge.local_model import LocalModel

log = logging.getLogger(__name__)

#: Called after every model call with the model that ran, the call's milliseconds and the error
#: it raised (None: it answered), whatever the task; e.g. the health watch after an update.
#: Must be fast and must not raise.
RunObserver = Callable[[ModelRef, float, BaseException | None], None]
_In = TypeVar("_In")
_Out = TypeVar("_Out")


class ModelSlot:
    """`probabilities()` runs the current model; `swap()` installs a loaded and tested model.

    Each model has its own lock (interpreters are not thread-safe), held for the duration of
    a call. A swap replaces the reference first, then closes the old model under its lock, so
    a call in flight on it finishes first; a caller that picked up the old reference just
    before the swap sees it closed and retries on the new one. No request fails or waits on
    a swap beyond one inference."""

    def __init__(self, model: LocalModel, observers: Sequence[RunObserver] = ()) -> None:
        self._model = model
        self._swap_lock = threading.Lock()
        self.observers = list(observers)

    @property
    def current(self) -> LocalModel:
        return self._model

    def probabilities(self, features: np.ndarray) -> tuple[LocalModel, np.ndarray]:
        """Run the current model on a batch; returns the model that answered and its output."""
        while True:
            model = self._model
            with model.lock:
                if not model.closed:
                    return model, self._observed(model, model.probabilities, features)

    def run(
        self, inputs: dict[str, np.ndarray], prepared_for: LocalModel | None = None
    ) -> tuple[LocalModel, dict[str, np.ndarray]]:
        """Every output of the current model for one checked batch; same swap rules as above.
        `prepared_for`: the model whose signature the input pipeline prepared every input for
        (Task.prepared_inputs); while it serves, the backend does not check them again."""
        while True:
            model = self._model
            with model.lock:
                if not model.closed:
                    call = model.run_prepared if model is prepared_for else model.run
                    return model, self._observed(model, call, inputs)

    def _observed(self, model: LocalModel, call: Callable[[_In], _Out], arg: _In) -> _Out:
        if not self.observers:
            return call(arg)
        start = time.perf_counter()
        try:
            out = call(arg)
        except Exception as exc:
            self._notify(model.ref, start, exc)
            raise
        self._notify(model.ref, start, None)
        return out

    def _notify(self, ref: ModelRef, start: float, error: BaseException | None) -> None:
        ms = (time.perf_counter() - start) * 1000.0
        for observe in self.observers:
            observe(ref, ms, error)

    def swap(self, new: LocalModel) -> LocalModel:
        """Make `new` current; close the previous model once its in-flight call is done."""
        with self._swap_lock:
            old, self._model = self._model, new
        with old.lock:
            old.close()
        log.info(
            "model swapped: %s %s -> %s %s", old.card.name, old.card.version, new.card.name, new.card.version
        )
        return old

    def close(self) -> None:
        with self._model.lock:
            self._model.close()
