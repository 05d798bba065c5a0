"""The SQLite cache of cloud answers: in the real cascade, across restarts, bounds, TTL,
invalidation and a corrupt database."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from edgecascade.edge.answer import Answer, ModelRef
from edgecascade.edge.cascade import Cascade, CascadeRequest
from edgecascade.edge.lookup import AnswerCache
from edgecascade.edge.model_slot import ModelSlot
from edgecascade.edge.policies import MaxProbabilityPolicy
from tests.edge.lookup.conftest import CountingModel, CuttableCloud

TTL = 100.0


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def open_cache(tmp_path: Path, clock: Clock) -> Iterator:  # type: ignore[type-arg]
    opened: list[AnswerCache] = []

    def make(max_entries: int = 1000, max_bytes: int = 1 << 20, path: Path | None = None) -> AnswerCache:
        cache = AnswerCache(
            path or tmp_path / "cache.sqlite3",
            max_entries=max_entries,
            max_bytes=max_bytes,
            ttl_s=TTL,
            clock=clock,
        )
        opened.append(cache)
        return cache

    yield make
    for cache in opened:
        cache.close()


def _cloud_answer(label: int, version: str = "1.0.0") -> Answer:
    probs = np.full(10, 0.01, dtype=np.float32)
    probs[label] = 0.91
    return Answer(
        label=str(label),
        class_index=label,
        confidence=0.91,
        source="cloud",
        edge_model=ModelRef("digits-edge", "1.0.0"),
        cloud_model=ModelRef("digits-cloud", version),
        escalated=True,
        probabilities=tuple(probs.tolist()),
    )


def _req(i: int) -> CascadeRequest:
    return CascadeRequest(np.full(64, i / 255, dtype=np.float32))


def test_repeated_hard_cases_come_from_the_cache_also_offline(
    open_cache, edge_model: CountingModel, cloud: CuttableCloud, digits_split
) -> None:
    _, held = digits_split
    cache = open_cache()
    cascade = Cascade(
        ModelSlot(edge_model), MaxProbabilityPolicy(0.9), cloud=cloud, lookups=[cache], cloud_sinks=[cache]
    )
    rows = held.features[:120]
    first = [cascade.answer(CascadeRequest(r)) for r in rows]
    hard = [i for i, a in enumerate(first) if a.source == "cloud"]
    assert len(hard) >= 3 and cloud.calls == len(hard) and edge_model.runs == len(rows)
    assert cache.stats.stores == len(hard) and cache.stats.misses == len(rows)
    cloud.reachable = False  # network cut: repeats are still answered with the cloud's answer
    for i in hard:
        again = cascade.answer(CascadeRequest(rows[i]))
        assert again.source == "cache" and not again.degraded
        assert again.label == first[i].label and again.cloud_model == ModelRef("digits-cloud", "1.0.0")
        assert again.probabilities == pytest.approx(first[i].probabilities)
    assert cloud.calls == len(hard) and edge_model.runs == len(rows)  # neither model ran again
    assert cache.stats.hits == len(hard)


def test_survives_a_restart(open_cache, tmp_path: Path) -> None:
    cache = open_cache()
    cache.remember(_req(1), _cloud_answer(4))
    cache.close()
    reopened = open_cache()
    hit = reopened.lookup(_req(1))
    assert hit is not None and hit.source == "cache" and hit.label == "4" and hit.class_index == 4
    assert reopened.stats.entries == 1 and reopened.cloud_model == "digits-cloud 1.0.0"


def test_ttl_with_injected_clock(open_cache, clock: Clock) -> None:
    cache = open_cache()
    cache.remember(_req(1), _cloud_answer(1))
    clock.now += TTL - 1
    assert cache.lookup(_req(1)) is not None
    clock.now += 1
    assert cache.lookup(_req(1)) is None
    assert cache.stats.expirations == 1 and cache.stats.entries == 0
    assert cache.stats.hits == 1 and cache.stats.misses == 1


def test_lru_eviction_by_entries(open_cache) -> None:
    cache = open_cache(max_entries=3)
    for i in (1, 2, 3):
        cache.remember(_req(i), _cloud_answer(i))
    assert cache.lookup(_req(1)) is not None  # 1 is now the most recently used
    cache.remember(_req(4), _cloud_answer(4))
    assert cache.stats.evictions == 1 and cache.stats.entries == 3
    assert cache.lookup(_req(2)) is None
    assert [cache.lookup(_req(i)) is not None for i in (1, 3, 4)] == [True, True, True]


def test_lru_eviction_by_bytes(open_cache, tmp_path: Path) -> None:
    probe = open_cache(path=tmp_path / "probe.sqlite3")
    probe.remember(_req(0), _cloud_answer(0))
    one = probe.stats.bytes  # every test answer has the same size
    cache = open_cache(max_bytes=3 * one + one // 2)
    for i in range(1, 6):
        cache.remember(_req(i), _cloud_answer(i))
    assert cache.stats.entries == 3 and cache.stats.bytes == 3 * one and cache.stats.evictions == 2
    assert [cache.lookup(_req(i)) is not None for i in range(1, 6)] == [False, False, True, True, True]


def test_new_cloud_model_version_invalidates(open_cache) -> None:
    cache = open_cache()
    for i in range(4):
        cache.remember(_req(i), _cloud_answer(i, "1.0.0"))
    cache.remember(_req(9), _cloud_answer(9, "2.0.0"))
    assert cache.stats.invalidations == 4 and cache.stats.entries == 1
    assert cache.lookup(_req(1)) is None
    hit = cache.lookup(_req(9))
    assert hit is not None and hit.cloud_model == ModelRef("digits-cloud", "2.0.0")


def test_new_encoding_version_invalidates_at_start(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "enc.sqlite3"
    first = AnswerCache(path, max_entries=10, max_bytes=1 << 20, ttl_s=TTL, clock=clock, encoding_version=1)
    first.remember(_req(1), _cloud_answer(1))
    first.close()
    second = AnswerCache(path, max_entries=10, max_bytes=1 << 20, ttl_s=TTL, clock=clock, encoding_version=2)
    assert second.stats.entries == 0 and second.stats.invalidations == 1
    second.close()


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_corrupt_database_is_moved_aside_and_rebuilt(
    open_cache, tmp_path: Path, caplog: pytest.LogCaptureFixture, damage: str
) -> None:
    path = tmp_path / "cache.sqlite3"
    if damage == "garbage":
        path.write_bytes(b"this is not SQLite" * 300)
    else:
        cache = open_cache()
        for i in range(200):
            cache.remember(_req(i), _cloud_answer(i % 10))
        cache.close()
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2] + bytes(4096) + data[len(data) // 2 + 4096 :])
    damaged = path.read_bytes()
    with caplog.at_level(logging.WARNING, logger="edgecascade.shared.sqlite_file"):
        cache = open_cache()
    assert "is corrupt" in caplog.text and "moved it to" in caplog.text
    aside = [p for p in tmp_path.iterdir() if ".corrupt-" in p.name and not p.name.endswith(("-wal", "-shm"))]
    assert len(aside) == 1 and aside[0].read_bytes() == damaged
    assert cache.stats.entries == 0
    cache.remember(_req(1), _cloud_answer(1))
    assert cache.lookup(_req(1)) is not None
    with sqlite3.connect(path) as db:  # the rebuilt file is a sound database
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    db.close()
