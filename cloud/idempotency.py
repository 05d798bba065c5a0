"""Replays of retried escalations: a request carrying parameter `idempotency_key` that was
already answered (or is being answered) gets the same response, computed and counted once.

This is a small bounded in-memory LRU with a TTL, one per worker process: a retry that lands
on another worker, or after a restart, is computed again. Keys are scoped by device. It is
bounded by entries and, where given a `size_of`, by the bytes of the answers it keeps: distinct
keys on large batches would otherwise keep gigabytes of answers for replay."""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")
Key = tuple[str, ...]


class IdempotencyCache(Generic[T]):
    """Maps a key to the future of its answer. Failed answers are forgotten so a retry recomputes."""

    def __init__(
        self,
        max_entries: int = 10_000,
        ttl_s: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
        *,
        max_bytes: int | None = None,
        size_of: Callable[[T], int] | None = None,
    ):
        """`size_of` gives an answer's bytes, counted against `max_bytes` (both or neither)."""
        self.max_entries = max_entries
        self.ttl_s = ttl_s
        self.max_bytes = max_bytes
        self._size_of = size_of
        self._clock = clock
        self._entries: OrderedDict[Key, tuple[float, asyncio.Future[T]]] = OrderedDict()
        self._sizes: dict[Key, int] = {}
        self.bytes = 0  # of the answers kept

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: Key) -> asyncio.Future[T] | None:
        """The future of an earlier request with this key, if within the TTL."""
        item = self._entries.get(key)
        if item is None:
            return None
        created, future = item
        if self._clock() - created > self.ttl_s:
            self._drop(key)
            return None
        self._entries.move_to_end(key)
        return future

    def begin(self, key: Key) -> asyncio.Future[T]:
        """Register a request being computed now; later ones with the key await its future."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        if key in self._entries:
            self._drop(key)
        self._entries[key] = (self._clock(), future)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._drop(next(iter(self._entries)))
        return future

    def finish(self, key: Key, future: asyncio.Future[T], result: T) -> None:
        """The computation succeeded: waiters get `result`, kept for replay while the bytes allow
        (least recently used answers go first; one over the whole budget is not kept)."""
        future.set_result(result)
        if self._size_of is None or self._entries.get(key, (0.0, None))[1] is not future:
            return  # no byte bound, or evicted while it was computed
        size = self._size_of(result)
        self._sizes[key] = size
        self.bytes += size
        while self.max_bytes is not None and self.bytes > self.max_bytes and self._entries:
            self._drop(next(iter(self._entries)))

    def fail(self, key: Key, future: asyncio.Future[T], exc: BaseException) -> None:
        """The computation failed: waiters get `exc`, and the key is free for a retry."""
        if self._entries.get(key, (0.0, None))[1] is future:
            self._drop(key)
        if not future.done():
            if isinstance(exc, asyncio.CancelledError):
                future.cancel()
            else:
                future.set_exception(exc)
                future.exception()  # mark retrieved: nobody may be waiting

    def _drop(self, key: Key) -> None:
        del self._entries[key]
        self.bytes -= self._sizes.pop(key, 0)
