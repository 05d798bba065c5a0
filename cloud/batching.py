"""Adaptive dynamic batching, in the shape of MLServer's `batching/adaptive.py`.

Requests wait in a bounded queue, created inside the running event loop on first use. Each
model instance has a consumer task: it takes the first waiting request, then keeps taking
until the batch holds `max_batch_size` requests or `max_queue_delay` has passed since the
first, runs the merged batch in a thread (the event loop stays responsive), and splits the
outputs back to one future per request. A failure is set on every future of its batch."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from edgecascade.shared.errors import ModelError, UnavailableError

log = logging.getLogger(__name__)

Predict = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]


@dataclass(slots=True)
class _Pending:
    inputs: dict[str, np.ndarray]
    rows: int
    future: asyncio.Future[dict[str, np.ndarray]]


class AdaptiveBatcher:
    """Merges concurrent requests for one model version. `predictors` holds one callable per
    model instance (each used by one thread at a time); `on_batch(n)` is told each batch's size."""

    def __init__(
        self,
        name: str,
        predictors: Sequence[Predict],
        *,
        max_batch_size: int,
        max_queue_delay_s: float,
        max_queue_size: int,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        self.name = name
        self._predictors = list(predictors)
        self.max_batch_size = max_batch_size
        self.max_queue_delay_s = max_queue_delay_s
        self.max_queue_size = max_queue_size
        self._on_batch = on_batch
        self._queue: asyncio.Queue[_Pending] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._executor: ThreadPoolExecutor | None = None

    async def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Queue one request (batch-first arrays, already checked) and wait for its outputs.
        Raises UnavailableError when the queue is full, or what the model raised."""
        queue = self._start()
        future: asyncio.Future[dict[str, np.ndarray]] = asyncio.get_running_loop().create_future()
        first = next(iter(inputs.values()), None)
        rows = len(first) if first is not None and first.ndim else 1
        try:
            queue.put_nowait(_Pending(inputs, rows, future))
        except asyncio.QueueFull:
            raise UnavailableError(
                f"model {self.name} is overloaded ({self.max_queue_size} requests queued)", retry_after=1.0
            ) from None
        return await future

    def _start(self) -> asyncio.Queue[_Pending]:
        # Created lazily so the queue and tasks belong to the loop that serves requests.
        if self._queue is None:
            self._queue = asyncio.Queue(maxsize=self.max_queue_size)
            self._executor = ThreadPoolExecutor(
                len(self._predictors), thread_name_prefix=f"model-{self.name}"
            )
            self._tasks = [
                asyncio.create_task(self._consume(fn), name=f"batcher-{self.name}-{i}")
                for i, fn in enumerate(self._predictors)
            ]
        return self._queue

    async def _consume(self, predict: Predict) -> None:
        while True:
            batch = await self._collect()
            await self._run(predict, batch)

    async def _collect(self) -> list[_Pending]:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        batch = [await self._queue.get()]
        deadline = loop.time() + self.max_queue_delay_s
        while len(batch) < self.max_batch_size:
            try:
                batch.append(self._queue.get_nowait())
                continue
            except asyncio.QueueEmpty:
                pass
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self._queue.get(), remaining))
            except TimeoutError:
                break
        return batch

    async def _run(self, predict: Predict, batch: list[_Pending]) -> None:
        batch = [p for p in batch if not p.future.done()]  # the client went away
        if not batch:
            return
        if self._on_batch is not None:
            self._on_batch(len(batch))
        loop = asyncio.get_running_loop()
        try:
            merged = (
                batch[0].inputs
                if len(batch) == 1
                else {k: np.concatenate([p.inputs[k] for p in batch]) for k in batch[0].inputs}
            )
            outputs = await loop.run_in_executor(self._executor, predict, merged)
            # a lone request gets the outputs whole (a model's outputs need not be batch-first)
            results = [outputs] if len(batch) == 1 else _split(outputs, [p.rows for p in batch])
        except asyncio.CancelledError:
            for p in batch:  # close() during a batch: nobody may be left waiting forever
                if not p.future.done():
                    p.future.set_exception(UnavailableError("server is shutting down", retry_after=1.0))
            raise
        except Exception as exc:  # every waiting request learns of the failure
            log.warning("model %s: batch of %d failed: %s", self.name, len(batch), exc)
            for p in batch:
                if not p.future.done():
                    p.future.set_exception(exc)
            return
        for p, result in zip(batch, results, strict=True):
            if not p.future.done():
                p.future.set_result(result)

    async def close(self) -> None:
        """Stop the consumers; requests still queued fail with UnavailableError (shutting down)."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except asyncio.CancelledError:
                pass
        self._tasks = []
        if self._queue is not None:
            while not self._queue.empty():
                pending = self._queue.get_nowait()
                if not pending.future.done():
                    pending.future.set_exception(UnavailableError("server is shutting down", retry_after=1.0))
        if self._executor is not None:
            self._executor.shutdown(wait=True)


def _split(outputs: dict[str, np.ndarray], rows: list[int]) -> list[dict[str, np.ndarray]]:
    total = sum(rows)
    for name, arr in outputs.items():
        if arr.ndim == 0 or arr.shape[0] != total:
            raise ModelError(f"output {name!r} has shape {list(arr.shape)}, but the batch had {total} rows")
    if len(rows) == 1:
        return [outputs]
    bounds = np.cumsum(rows)[:-1]
    parts = {name: np.split(arr, bounds) for name, arr in outputs.items()}
    return [{name: parts[name][i] for name in outputs} for i in range(len(rows))]
