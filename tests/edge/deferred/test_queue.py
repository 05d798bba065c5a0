"""The durable queue and verdict store on a real SQLite file: bounds with counted drops,
send order, one verdict per request id, and everything surviving a reopen."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgecascade.edge import deferred as edge_deferred
from edgecascade.edge.cloud_client import NullCloudClient
from edgecascade.edge.config.profile import DeviceProfile
from edgecascade.edge.deferred import DeferredDatabase, DeferredQueue, QueuedCase, Verdict, VerdictStore
from tests.conftest import MODELS


def _case(i: int, *, t: float | None = None, confidence: float = 0.5, raw: bytes | None = None) -> QueuedCase:
    features = np.full(64, i, dtype=np.float32)
    return QueuedCase(f"r{i}", float(i) if t is None else t, features, str(i % 10), confidence, "hard", raw)


def _verdict(rid: str, at: float = 100.0) -> Verdict:
    return Verdict(rid, "3", 0.5, "8", 0.9, "digits-cloud", "1.0.0", 1.0, at)


class Clock:
    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _open(
    path: Path, monotonic: Clock | None = None, **bounds: float
) -> tuple[DeferredDatabase, DeferredQueue, VerdictStore]:
    db = DeferredDatabase(path, monotonic=monotonic or Clock())
    settings = {"max_cases": 100, "max_bytes": 1 << 20, "max_age_s": 3600.0, **bounds}
    queue = DeferredQueue(
        db,
        max_cases=int(settings["max_cases"]),
        max_bytes=int(settings["max_bytes"]),
        max_age_s=settings["max_age_s"],
    )
    return db, queue, VerdictStore(db, max_verdicts=int(bounds.get("max_verdicts", 100)), ttl_s=3600.0)


def test_count_bound_drops_the_oldest_and_counts_them(tmp_path: Path) -> None:
    db, queue, _ = _open(tmp_path / "q.sqlite3", max_cases=5)
    assert queue.add([_case(i) for i in range(8)]) == 8
    assert queue.depth() == 5
    assert [queue.contains(f"r{i}") for i in range(8)] == [False] * 3 + [True] * 5
    assert db.counters() == {"enqueued": 8, "dropped_count": 3}


def test_byte_bound_and_age_drop_the_oldest(tmp_path: Path) -> None:
    running = Clock()
    db, queue, _ = _open(tmp_path / "q.sqlite3", running, max_bytes=4096 + 10, max_age_s=10.0)
    for i in range(5):  # 256 + 1000 bytes each, one a second of running time
        running.now = float(i)
        queue.add([_case(i, raw=b"x" * 1000)])
    assert queue.depth() == 3 and queue.size_bytes() == 3 * 1256
    assert queue.next() is not None and queue.next().request_id == "r2"  # type: ignore[union-attr]
    running.now = 12.5
    assert (
        queue.expire(now=1e12) == 1
    )  # r2 (queued at 2 s) is past 10 s; r3 (3 s) is not; the wall clock is ignored
    assert db.counters() == {"enqueued": 5, "dropped_size": 2, "dropped_age": 1}


def test_send_order_and_features_round_trip(tmp_path: Path) -> None:
    _, queue, _ = _open(tmp_path / "q.sqlite3")
    queue.add([_case(1, confidence=0.6), _case(2, confidence=0.3), _case(3, confidence=0.45)])
    first = queue.next()
    assert first is not None and first.request_id == "r1"
    np.testing.assert_array_equal(first.features, np.full(64, 1, dtype=np.float32))
    queue.order = "most_uncertain"
    assert [queue.next().request_id for _ in range(1)] == ["r2"]  # type: ignore[union-attr]


def test_one_verdict_per_request_id(tmp_path: Path) -> None:
    db, queue, verdicts = _open(tmp_path / "q.sqlite3")
    queue.add([_case(1)])
    assert queue.complete(_verdict("r1")) is True
    assert not queue.contains("r1") and verdicts.get("r1") == _verdict("r1").payload()
    assert queue.complete(_verdict("r1", at=200.0)) is False  # a re-sent case: no second verdict
    assert verdicts.get("r1")["answered_at"] == 100.0  # type: ignore[index]
    assert queue.add([_case(1)]) == 0  # answered already: never queued again
    assert db.counters() == {"enqueued": 1, "verdicts": 1}
    assert [rid for rid, *_ in verdicts.undelivered(10)] == ["r1"]
    verdicts.mark("r1", recorded=True)
    assert verdicts.pending_publish() == 1
    verdicts.mark("r1", published=True)
    assert verdicts.undelivered(10) == [] and verdicts.pending_publish() == 0


def test_everything_survives_a_reopen(tmp_path: Path) -> None:
    db, queue, _ = _open(tmp_path / "q.sqlite3")
    queue.add([_case(i) for i in range(4)])
    queue.complete(_verdict("r0"))
    queue.record_failure("r1")
    db.close()
    db, queue, verdicts = _open(tmp_path / "q.sqlite3")
    assert queue.depth() == 3 and verdicts.pending_publish() == 1
    case = queue.next()
    assert case is not None and case.request_id == "r1" and case.attempts == 1
    assert db.counters() == {"enqueued": 4, "verdicts": 1}


def test_prune_keeps_undelivered_verdicts_until_over_the_bound(tmp_path: Path) -> None:
    db, queue, verdicts = _open(tmp_path / "q.sqlite3", max_verdicts=2)
    for i in range(3):
        queue.complete(_verdict(f"v{i}", at=float(i)))
    verdicts.mark("v1", published=True, recorded=True)
    assert verdicts.prune(now=10.0) == 1  # the delivered one goes first
    assert verdicts.get("v1") is None and verdicts.count() == 2
    queue.complete(_verdict("v3", at=3.0))
    assert verdicts.prune(now=10.0) == 1  # only undelivered left: the oldest is dropped, counted
    assert verdicts.get("v0") is None and db.counters()["dropped_verdict"] == 1


@pytest.mark.parametrize("section", [{"enabled": False}, {}])
def test_build_without_deferral_is_a_do_nothing(tmp_path: Path, section: dict[str, object]) -> None:
    profile = DeviceProfile.model_validate(
        {
            "profile": "t",
            "data_dir": str(tmp_path),
            "memory_budget_mb": 100,
            "model": {"path": str(MODELS / "digits_edge_int8.tflite")},
            "deferred": section,
        }
    )
    # Switched off, or no cloud to defer to: nothing is opened or started.
    parts = edge_deferred.build(profile, NullCloudClient(), None, None, None)
    assert parts.services == [] and parts.verdicts is None
    assert parts.counters() == {"queued": 0, "sent": 0, "verdicts": 0, "pending_publish": 0, "dropped": 0}
    assert not (tmp_path / "deferred.sqlite3").exists()


def test_a_wall_clock_step_ages_no_queued_case_and_running_time_survives_a_reopen(tmp_path: Path) -> None:
    # A Pi without a real-time clock steps forward weeks at its NTP sync: cases queued before
    # it are minutes old, not weeks.
    path = tmp_path / "q.sqlite3"
    db, queue, _ = _open(path, Clock(500.0), max_age_s=3600.0)
    queue.add([_case(i, t=1_700_000_000.0) for i in range(3)])
    assert queue.expire(now=1_700_000_000.0 + 30 * 86400) == 0 and queue.depth() == 3
    db.close()  # stored: held 0 s so far
    later = Clock(10.0)  # the next process's monotonic clock starts again
    db, queue, _ = _open(path, later, max_age_s=3600.0)
    later.now += 3599
    assert queue.expire(now=0.0) == 0
    later.now += 2
    assert queue.expire(now=0.0) == 3 and db.counters()["dropped_age"] == 3
