"""The bounded queue between the camera's reader and worker threads, bounded in frames and in
bytes: a source's resolution is the source's choice (an 8000x8000 stream is 183 MiB a frame),
so a count alone does not bound memory."""

from __future__ import annotations

import queue
import threading
import time
from collections import deque

import numpy as np

Frame = tuple[int, float, np.ndarray]  # (frame index since open, unix seconds read, BGR image)
#: Queued when a source's session ends (it dropped out, a looping file restarts): the worker
#: ends the objects it tracks. It takes no room and is never refused.
SESSION_END = None


class FrameQueue:
    """At most `max_frames` frames and `max_bytes` of their pixels (one frame always fits an
    empty queue), in order, with session ends between them. One reader puts, one worker gets."""

    def __init__(self, max_frames: int, max_bytes: int) -> None:
        self.max_frames = max_frames
        self.max_bytes = max_bytes
        self._items: deque[Frame | None] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self.frames = 0
        self.bytes = 0

    def put(self, item: Frame | None, timeout_s: float | None = 0.0) -> bool:
        """Queue `item` if there is room within `timeout_s` (None: until there is); False when
        there was none, or the queue is closed."""
        with self._cond:
            if item is not None:
                deadline = None if timeout_s is None else time.monotonic() + timeout_s
                while not self._closed and not self._has_room(item[2].nbytes):
                    left = None if deadline is None else deadline - time.monotonic()
                    if left is not None and left <= 0:
                        return False
                    self._cond.wait(left)
            if self._closed:
                return False
            if item is not None:
                self.frames += 1
                self.bytes += item[2].nbytes
            self._items.append(item)
            self._cond.notify_all()
            return True

    def close(self) -> None:
        """Refuse every later put (and wake a waiting one); what is queued can still be got."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def get(self, timeout_s: float) -> Frame | None:
        """The oldest item; raises queue.Empty after `timeout_s` without one."""
        with self._cond:
            if not self._items and not self._cond.wait_for(lambda: bool(self._items), timeout_s):
                raise queue.Empty
            item = self._items.popleft()
            if item is not None:
                self.frames -= 1
                self.bytes -= item[2].nbytes
            self._cond.notify_all()
            return item

    def empty(self) -> bool:
        with self._cond:
            return not self._items

    def drain(self) -> int:
        """Drop everything queued; the number of frames dropped."""
        with self._cond:
            dropped = self.frames
            self._items.clear()
            self.frames = self.bytes = 0
            self._cond.notify_all()
            return dropped

    def _has_room(self, nbytes: int) -> bool:
        if self.frames >= self.max_frames:
            return False
        return self.frames == 0 or self.bytes + nbytes <= self.max_bytes
