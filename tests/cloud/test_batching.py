"""The adaptive batcher, in-process with the real ONNX model."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from edgecascade.cloud.batching import AdaptiveBatcher
from edgecascade.shared.backends import load_backend
from edgecascade.shared.errors import ModelError, UnavailableError


def test_concurrent_requests_share_one_batch_and_get_their_own_rows(models_dir: Path, digits_split) -> None:  # type: ignore[no-untyped-def]
    backend = load_backend(models_dir / "digits_cloud.onnx")
    rows = digits_split[1].features[:10]
    sizes: list[int] = []

    async def run() -> list[dict[str, np.ndarray]]:
        batcher = AdaptiveBatcher(
            "m",
            [backend.predict],
            max_batch_size=8,
            max_queue_delay_s=0.2,
            max_queue_size=64,
            on_batch=sizes.append,
        )
        try:
            # Ten requests of one row and one of two rows: batches of 8 and 3 requests.
            calls = [batcher.predict({"input": rows[i : i + 1]}) for i in range(10)]
            calls.append(batcher.predict({"input": rows[:2]}))
            return await asyncio.gather(*calls)
        finally:
            await batcher.close()

    results = asyncio.run(run())
    assert sizes == [8, 3]
    direct = backend.predict({"input": rows})
    for i in range(10):
        assert results[i]["label"].tolist() == direct["label"][i : i + 1].tolist()
    assert results[10]["probabilities"].shape == (2, 10)


def test_a_failure_reaches_every_request_of_the_batch() -> None:
    def broken(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"out": np.zeros(1)}  # wrong number of rows for a batch of 3

    async def run() -> list[object]:
        batcher = AdaptiveBatcher("m", [broken], max_batch_size=3, max_queue_delay_s=0.5, max_queue_size=8)
        try:
            calls = [batcher.predict({"x": np.zeros((1, 2))}) for _ in range(3)]
            return await asyncio.gather(*calls, return_exceptions=True)
        finally:
            await batcher.close()

    results = asyncio.run(run())
    assert len(results) == 3 and all(isinstance(r, ModelError) for r in results)


def test_full_queue_is_refused_as_unavailable() -> None:
    release = asyncio.Event()

    async def run() -> None:
        loop = asyncio.get_running_loop()

        def slow(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            asyncio.run_coroutine_threadsafe(release.wait(), loop).result(5)
            return {"out": inputs["x"]}

        batcher = AdaptiveBatcher("m", [slow], max_batch_size=1, max_queue_delay_s=0, max_queue_size=1)
        running = asyncio.ensure_future(batcher.predict({"x": np.zeros((1, 1))}))
        await asyncio.sleep(0.05)  # the first is now inside the model
        queued = asyncio.ensure_future(batcher.predict({"x": np.ones((1, 1))}))
        await asyncio.sleep(0.01)
        with pytest.raises(UnavailableError, match="overloaded"):
            await batcher.predict({"x": np.ones((1, 1))})
        release.set()
        assert (await running)["out"].tolist() == [[0.0]]
        assert (await queued)["out"].tolist() == [[1.0]]
        await batcher.close()

    asyncio.run(run())
