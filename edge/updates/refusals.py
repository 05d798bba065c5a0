"""Manifests refused unread (garbage, forged, replayed, signed for another device): counted,
logged and reported in the device's status, at most once a second, so a flood of garbage makes
no flood of status messages while the last count still goes out within the second."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)


class RefusalCounter:
    """`refuse()` from any thread; `publish(count, last_reason)` is called on the leading edge
    and, for refusals inside the interval, once more at its end (trailing edge)."""

    def __init__(
        self, kind: str, publish: Callable[[int, str | None], None], interval_s: float = 1.0
    ) -> None:
        self.kind = kind
        self.publish = publish
        self.interval_s = interval_s
        self.count = 0
        self.last: str | None = None
        self._published = -1e9
        self._timer: threading.Timer | None = None
        self._lock = threading.Lock()

    def refuse(self, topic: str, reason: str) -> None:
        with self._lock:
            self.count += 1
            self.last = reason[:300]
            count = self.count
            now_due = self._timer is None and time.monotonic() - self._published >= self.interval_s
            if not now_due and self._timer is None:
                self._timer = threading.Timer(
                    self._published + self.interval_s - time.monotonic(), self._flush
                )
                self._timer.daemon = True
                self._timer.start()
        log.warning("refused %s manifest on %s (%d so far): %s", self.kind, topic, count, reason[:300])
        if now_due:
            self._flush()

    def _flush(self) -> None:
        with self._lock:
            self._timer = None
            self._published = time.monotonic()
            count, last = self.count, self.last
        self.publish(count, last)

    def cancel(self) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
