"""Per-session state of stateful models (streaming keyword spotters, voice activity, RNNs):
the card names state pairs; the output of one call feeds the input of the next call of the
same session. Bounded: the least recently used sessions are dropped beyond `max_sessions`."""

from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np

from edgecascade.shared.backends.base import TensorSpec


class SessionStates:
    def __init__(self, max_sessions: int) -> None:
        self.max_sessions = max_sessions
        self._states: OrderedDict[str, dict[str, np.ndarray]] = OrderedDict()
        self._lock = threading.Lock()
        self.dropped = 0

    def get(self, session: str, specs: list[TensorSpec]) -> dict[str, np.ndarray]:
        """The session's state inputs; zeros (dynamic dims as 1) for a new session."""
        with self._lock:
            found = self._states.get(session)
            if found is not None:
                self._states.move_to_end(session)
                return found
        return {s.name: np.zeros(tuple(1 if d < 0 else d for d in s.shape), dtype=s.dtype) for s in specs}

    def put(self, session: str, state: dict[str, np.ndarray]) -> None:
        with self._lock:
            self._states[session] = state
            self._states.move_to_end(session)
            while len(self._states) > self.max_sessions:
                self._states.popitem(last=False)
                self.dropped += 1

    def __len__(self) -> int:
        return len(self._states)
