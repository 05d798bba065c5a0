"""The durable buffer on a real SQLite file: sequence numbers, priority eviction, age, restart."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from edgecascade.edge.telemetry.buffer import TelemetryBuffer


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _body(n: int, size: int = 100) -> str:
    """A JSON body of exactly `size` bytes."""
    return json.dumps(f"{n:04d}" + "x" * (size - 6))


def test_sequence_numbers_survive_reopen_and_are_never_reused(tmp_path: Path) -> None:
    buf = TelemetryBuffer(tmp_path / "b.sqlite3", max_bytes=10**6, max_age_s=3600)
    s0 = buf.last_seq
    assert buf.append([(1.0, "inference", _body(i)) for i in range(10)]) == s0 + 10
    buf.delete(range(s0 + 1, s0 + 11))
    buf.close()
    again = TelemetryBuffer(tmp_path / "b.sqlite3", max_bytes=10**6, max_age_s=3600)
    assert again.depth == 0 and again.last_seq == s0 + 10
    assert again.append([(1.0, "event", _body(0))]) == s0 + 11
    assert again.seqs() == [s0 + 11]


def test_a_new_buffer_starts_past_every_sequence_number_a_wiped_one_used(tmp_path: Path) -> None:
    """A data folder wiped (or a card reflashed) under the same device id: the cloud still
    holds the old numbers, so a new buffer must not count from 1 again (every new record would
    be taken for a duplicate and dropped); it starts at the time in microseconds."""
    clock = Clock(1_700_000_000.0)
    path = tmp_path / "b.sqlite3"
    old = TelemetryBuffer(path, max_bytes=10**6, max_age_s=3600, clock=clock)
    assert old.last_seq == 1_700_000_000_000_000
    last_old = old.append([(1.0, "inference", _body(i)) for i in range(50)])
    old.close()
    for side in ("", "-wal", "-shm"):
        (tmp_path / f"b.sqlite3{side}").unlink(missing_ok=True)
    clock.now += 60
    new = TelemetryBuffer(path, max_bytes=10**6, max_age_s=3600, clock=clock)
    assert new.append([(1.0, "inference", _body(0))]) > last_old


def test_full_buffer_evicts_routine_oldest_first_and_keeps_high_value(tmp_path: Path) -> None:
    clock = Clock()
    buf = TelemetryBuffer(tmp_path / "b.sqlite3", max_bytes=5000, max_age_s=3600, clock=clock)
    s0 = buf.last_seq
    high = [(1.0, k, _body(i)) for i, k in enumerate(["verdict", "update_status", "metrics", "hard_case"])]
    buf.append(high)  # seqs 1-4
    buf.append([(1.0, "event", _body(i)) for i in range(5)])  # 5-9
    buf.append([(1.0, "inference", _body(i)) for i in range(60)])  # 10-69
    # 69 records of 100 bytes over a 5000-byte cap: 19 go, then one more to make room for the
    # drop report (which is never evicted by size).
    assert buf.dropped() == {"inference": 20}
    seqs = buf.seqs()
    assert seqs[:9] == [s0 + k for k in range(1, 10)]  # every high-value record is still there
    assert seqs[9:-1] == [s0 + k for k in range(10 + 20, 70)]  # the oldest routine ones went
    report = buf.peek(1)[0]  # drop reports go out first
    assert report.kind == "drops" and json.loads(report.body)["total"] == 20
    # With no routine records left, the next class (events) goes, oldest first.
    # 9 x 100 + 3 x 1400 + the report is just over the cap once all 60 routine records are gone.
    buf.append([(1.0, "verdict", _body(i, 1400)) for i in range(3)])
    dropped = buf.dropped()
    assert dropped == {"inference": 60, "event": 2}
    assert buf.seqs()[:7] == [s0 + k for k in (1, 2, 3, 4, 7, 8, 9)]
    assert [r.kind for r in buf.peek(100)].count("drops") == 1  # the cumulative report replaced the old one
    assert "verdict" not in dropped and "metrics" not in dropped


def test_records_held_longer_than_max_age_are_expired_and_counted(tmp_path: Path) -> None:
    clock, running = Clock(), Clock(50.0)
    buf = TelemetryBuffer(
        tmp_path / "b.sqlite3", max_bytes=10**6, max_age_s=100, clock=clock, monotonic=running
    )
    buf.append([(clock.now, "inference", _body(i)) for i in range(7)])
    running.now += 90
    buf.append([(clock.now, "event", _body(i)) for i in range(3)])
    running.now += 20  # the first 7 are held 110 s, the last 3 for 20 s
    assert buf.expire() == 7
    assert buf.dropped() == {"inference": 7}
    kinds = sorted(r.kind for r in buf.peek(100))
    assert kinds == ["drops", "event", "event", "event"]
    running.now += 1000
    assert buf.expire() == 3  # the drop report itself does not expire
    assert [r.kind for r in buf.peek(100)] == ["drops"]


def test_a_wall_clock_step_ages_nothing_and_running_time_survives_a_restart(tmp_path: Path) -> None:
    """A Pi without a real-time clock boots at an old time and steps forward weeks at its NTP
    sync: records made before it must not expire at once. Their age is running time, which
    goes on from where it was after a restart (power-off time does not count)."""
    clock, running = Clock(1_700_000_000.0), Clock(1000.0)
    path = tmp_path / "b.sqlite3"
    buf = TelemetryBuffer(path, max_bytes=10**6, max_age_s=3600, clock=clock, monotonic=running)
    buf.append([(clock.now, "inference", _body(i)) for i in range(5)])
    clock.now += 30 * 24 * 3600  # NTP: 30 days forward
    running.now += 60
    assert buf.expire() == 0 and buf.depth == 5
    running.now += 1800
    buf.close()
    # Powered off a week; the new process's monotonic clock starts again near zero.
    clock.now += 7 * 24 * 3600
    second = Clock(3.0)
    again = TelemetryBuffer(path, max_bytes=10**6, max_age_s=3600, clock=clock, monotonic=second)
    assert again.expire() == 0 and again.depth == 5  # held 1,860 s of running time
    second.now += 1700
    assert again.expire() == 0  # 3,560 s
    second.now += 41
    assert again.expire() == 5  # 3,601 s


def test_peek_pages_in_priority_then_sequence_order(tmp_path: Path) -> None:
    buf = TelemetryBuffer(tmp_path / "b.sqlite3", max_bytes=10**6, max_age_s=3600)
    s0 = buf.last_seq
    buf.append([(1.0, k, "{}") for k in ["inference", "metrics", "inference", "event", "metrics"]])
    first = buf.peek(2)
    assert [r.seq - s0 for r in first] == [2, 5]
    rest = buf.peek(10, after=(3, s0 + 5))
    assert [r.seq - s0 for r in rest] == [4, 1, 3]
    assert buf.delete([s0 + 2, s0 + 5, s0 + 99]) == 2 and buf.depth == 3 and buf.size_bytes == 6


def test_a_corrupt_buffer_is_rebuilt_and_its_sequence_never_repeats(tmp_path: Path) -> None:
    """The shared opener moves a damaged file aside; the new one's sequence starts at the
    current time in microseconds, past any number the lost file used, so the cloud does not
    take new records for duplicates of lost ones."""
    clock = Clock(1_700_000_000.0)
    path = tmp_path / "b.sqlite3"
    buf = TelemetryBuffer(path, max_bytes=10**6, max_age_s=3600, clock=clock)
    buf.append([(1.0, "inference", _body(i)) for i in range(50)])
    buf.close()
    path.write_bytes(b"this is not a database" + bytes(4096))
    for side in ("-wal", "-shm"):
        (tmp_path / f"b.sqlite3{side}").unlink(missing_ok=True)
    again = TelemetryBuffer(path, max_bytes=10**6, max_age_s=3600, clock=clock)
    assert again.depth == 0 and again.last_seq == 1_700_000_000_000_000
    assert again.append([(1.0, "event", _body(0))]) == 1_700_000_000_000_001
    assert len([p for p in tmp_path.iterdir() if ".corrupt-" in p.name]) == 1


def test_delete_ranges_removes_exactly_the_acknowledged_records(tmp_path: Path) -> None:
    buf = TelemetryBuffer(tmp_path / "b.sqlite3", max_bytes=10**6, max_age_s=3600)
    s0 = buf.last_seq
    buf.append([(1.0, "inference", _body(i)) for i in range(20)])
    assert buf.delete_ranges([(s0 + 1, s0 + 5), (s0 + 8, s0 + 8), (s0 + 15, s0 + 99)]) == 12
    assert [s - s0 for s in buf.seqs()] == [6, 7, 9, 10, 11, 12, 13, 14]
    assert buf.delete_ranges([(s0 + 1, s0 + 5)]) == 0  # an acknowledgement repeated is harmless
    assert buf.depth == 8 and buf.size_bytes == 800


def test_a_buffer_of_an_earlier_release_is_upgraded_and_its_records_age_by_their_time(tmp_path: Path) -> None:
    path = tmp_path / "b.sqlite3"
    old = sqlite3.connect(path)
    old.executescript(
        "CREATE TABLE records (seq INTEGER PRIMARY KEY, ts REAL NOT NULL, kind TEXT NOT NULL, "
        "priority INTEGER NOT NULL, size INTEGER NOT NULL, body TEXT NOT NULL);"
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);"
        "INSERT INTO meta VALUES ('last_seq', 3);"
        "INSERT INTO records VALUES (1, 100.0, 'inference', 0, 2, '{}'), (2, 100.0, 'inference', 0, 2, '{}'),"
        " (3, 990.0, 'event', 1, 2, '{}');"
    )
    old.commit()
    old.close()
    clock = Clock(1000.0)
    buf = TelemetryBuffer(path, max_bytes=10**6, max_age_s=100, clock=clock, monotonic=Clock(0.0))
    assert buf.seqs() == [1, 2, 3] and buf.last_seq == 3  # nothing lost, the sequence goes on
    assert buf.append([(1000.0, "event", "{}")]) == 4
    assert buf.expire() == 2  # the two made 900 s ago by their timestamps; the rest are young
    assert buf.seqs()[:2] == [3, 4]
