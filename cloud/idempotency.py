"""Replays of retried escalations: a request carrying parameter `idempotency_key` that was
already answered (or is being answered) gets the same response, computed and counted once.

This is a small bounded in-memory LRU with a TTL, one per worker process: a retry that lands
on another worker, or after a restart, is computed again. Keys are scoped by device."""

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
        self, max_entries: int = 10_000, ttl_s: float = 600.0, clock: Callable[[], float] = time.monotonic
    ):
        self.max_entries = max_entries
        self.ttl_s = ttl_s
        self._clock = clock
        self._entries: OrderedDict[Key, tuple[float, asyncio.Future[T]]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: Key) -> asyncio.Future[T] | None:
        """The future of an earlier request with this key, if within the TTL."""
        item = self._entries.get(key)
        if item is None:
            return None
        created, future = item
        if self._clock() - created > self.ttl_s:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return future

    def begin(self, key: Key) -> asyncio.Future[T]:
        """Register a request being computed now; later ones with the key await its future."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._entries[key] = (self._clock(), future)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
        return future

    def fail(self, key: Key, future: asyncio.Future[T], exc: BaseException) -> None:
        """The computation failed: waiters get `exc`, and the key is free for a retry."""
        if self._entries.get(key, (0.0, None))[1] is future:
            del self._entries[key]
        if not future.done():
            if isinstance(exc, asyncio.CancelledError):
                future.cancel()
            else:
                future.set_exception(exc)
                future.exception()  # mark retrieved: nobody may be waiting
