"""A background thread that commits what a hot path queued: every `interval_s`, or sooner when
the hot path calls `wake()` (a batch is full). The telemetry recorder and the deferred-case
observer both write this way, so answering never waits for the disk."""

from __future__ import annotations

import threading
from collections.abc import Callable


class FlushLoop:
    def __init__(self, name: str, interval_s: float, flush: Callable[[], object]) -> None:
        self.name = name
        self.interval_s = interval_s
        self._flush = flush
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def wake(self) -> None:
        """Flush now rather than at the next interval. Cheap when already woken (hot path)."""
        if not self._wake.is_set():
            self._wake.set()

    def start(self) -> None:
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float) -> None:
        """End the thread; the owner makes its own final flush after this returns."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(self.interval_s)
            self._wake.clear()
            self._flush()
