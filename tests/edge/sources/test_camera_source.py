"""The camera source on real video files through a real agent: sampling, backpressure, reopen."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from edgecascade.edge.sources import CameraEvent, CameraSource, MemoryEventSink
from edgecascade.edge.sources.backoff import Backoff
from edgecascade.tools.make_video import read_labels
from tests.edge.sources.conftest import AgentFactory, VideoFactory


class SlowSink(MemoryEventSink):
    """A real consumer that takes `delay_s` per event (a slow uplink), to make the worker fall behind."""

    def __init__(self, delay_s: float) -> None:
        super().__init__()
        self.delay_s = delay_s

    def publish(self, event: CameraEvent) -> None:
        time.sleep(self.delay_s)
        super().publish(event)


def wait_for(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


def run_to_end(source: CameraSource, timeout_s: float = 20.0) -> None:
    source.start()
    try:
        assert source.wait_finished(timeout_s), source.counters()
    finally:
        source.stop(2.0)


@pytest.mark.parametrize(
    ("file_fps", "fps", "expected"),
    [
        (30.0, 10.0, list(range(0, 90, 3))),
        (30.0, 12.0, None),
        (30.0, 30.0, list(range(90))),
        (30.0, 60.0, list(range(90))),
    ],
)
def test_file_is_sampled_by_frame_index(
    make_video: VideoFactory,
    make_agent: AgentFactory,
    file_fps: float,
    fps: float,
    expected: list[int] | None,
) -> None:
    video = make_video(frames=90, fps=file_fps)
    sink = MemoryEventSink()
    source = CameraSource.from_agent(make_agent(f'source = "{video}"\nfps = {fps}'), sink)
    run_to_end(source)
    frames = [e.frame for e in sink.recent()]
    if expected is None:  # 12 of 30 a second: 36 of 90 frames, never two adjacent gaps of 3
        assert len(frames) == 36 and frames[0] == 0
        assert {b - a for a, b in zip(frames, frames[1:], strict=False)} == {2, 3}
    else:
        assert frames == expected
    counters = source.counters()
    assert counters["frames_read"] == 90
    assert counters["frames_sampled"] == counters["frames_processed"] == len(frames)
    assert counters["frames_skipped"] == counters["frames_failed"] == counters["read_errors"] == 0


def test_events_carry_labels_of_the_real_model(
    make_video: VideoFactory, make_agent: AgentFactory, held
) -> None:
    video = make_video(frames=540)
    agent = make_agent(f'source = "{video}"\nfps = 10')
    sink = MemoryEventSink()
    source = CameraSource.from_agent(agent, sink, clock=lambda: 1_700_000_000.0)
    run_to_end(source)
    events = sink.recent()
    assert [e.frame for e in events] == list(range(540))
    # FFV1 is lossless: the video path gives exactly the direct path's answers.
    direct = [agent.predict(row).label for row in held.features]
    assert [e.label for e in events] == direct
    truth = read_labels(video)
    accuracy = sum(int(e.label) == truth[e.frame] for e in events) / len(events)
    assert accuracy == pytest.approx(agent.model.card.heldout_accuracy, abs=1e-6)
    first = events[0]
    assert first.device == "cam-0001" and first.ts == 1_700_000_000.0 and first.source == str(video)
    assert first.model is not None and (first.model.name, first.model.version) == ("digits-edge", "1.0.0")
    # Offline: hard cases are answered locally and marked degraded, never lost.
    assert any(e.escalated and e.degraded for e in events)
    assert all(e.answered_by == "edge" for e in events)


def test_slow_consumer_skips_frames_of_a_live_source_within_the_queue_bound(
    make_video: VideoFactory, make_agent: AgentFactory, caplog: pytest.LogCaptureFixture
) -> None:
    # realtime = the file is read at its own 200 fps like a camera; answering takes 20 ms a frame.
    video = make_video(frames=120, fps=200.0)
    agent = make_agent(f'source = "{video}"\nfps = 200\nrealtime = true\nqueue_size = 3')
    sink = SlowSink(0.02)
    source = CameraSource.from_agent(agent, sink)
    run_to_end(source)
    c = source.counters()
    assert c["frames_read"] == c["frames_sampled"] == 120
    assert c["frames_skipped"] > 0 and c["frames_failed"] == 0
    assert c["frames_processed"] + c["frames_skipped"] == 120
    assert c["frames_processed"] == len(sink.recent()) == c["events_published"]
    assert 1 <= c["queue_high_water"] <= 3
    frames = [e.frame for e in sink.recent()]
    assert frames == sorted(set(frames))  # skipped frames are missing, none duplicated or reordered
    # Logged on the first skip and every 100th, not per frame.
    skip_logs = [r for r in caplog.records if "frames skipped so far" in r.getMessage()]
    assert len(skip_logs) == (c["frames_skipped"] + 99) // 100


def test_stop_answers_what_it_can_and_counts_the_rest(
    make_video: VideoFactory, make_agent: AgentFactory
) -> None:
    video = make_video(frames=60, fps=30.0)
    sink = SlowSink(0.05)
    source = CameraSource.from_agent(make_agent(f'source = "{video}"\nfps = 30\nqueue_size = 4'), sink)
    source.start()
    wait_for(lambda: source.counters()["frames_processed"] >= 2)
    source.stop(0.1)  # four queued frames need 0.2 s: not all can be answered in time
    c = source.counters()
    assert source.state == "stopped" and not source.wait_finished(0)
    assert c["frames_skipped"] >= 1 and c["frames_failed"] == 0
    assert c["frames_sampled"] == c["frames_processed"] + c["frames_skipped"] < 60
    assert c["frames_processed"] == len(sink.recent())


def test_a_file_read_faster_than_real_time_waits_instead_of_skipping(
    make_video: VideoFactory, make_agent: AgentFactory
) -> None:
    video = make_video(frames=30, fps=200.0)
    source = CameraSource.from_agent(
        make_agent(f'source = "{video}"\nfps = 200\nqueue_size = 2'), SlowSink(0.005)
    )
    run_to_end(source)
    c = source.counters()
    assert c["frames_processed"] == 30 and c["frames_skipped"] == 0 and c["queue_high_water"] <= 2


def test_backoff_doubles_up_to_the_cap_and_resets() -> None:
    backoff = Backoff(0.5, 3.0)
    assert [backoff.next_delay() for _ in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    backoff.reset()
    assert backoff.next_delay() == 0.5
    with pytest.raises(ValueError):
        Backoff(2.0, 1.0)


def test_missing_file_is_picked_up_after_backoff(
    tmp_path: Path, make_video: VideoFactory, make_agent: AgentFactory
) -> None:
    later = tmp_path / "later.avi"
    agent = make_agent(f'source = "{later}"\nfps = 10\nreopen_min_s = 0.02\nreopen_max_s = 0.1')
    sink = MemoryEventSink()
    source = CameraSource.from_agent(agent, sink)
    source.start()
    try:
        wait_for(lambda: source.counters()["read_errors"] >= 3)
        assert source.state in ("down", "opening") and source.counters()["frames_read"] == 0
        ready = make_video("ready.avi", frames=25)
        os.replace(ready, later)  # appears atomically, as a recording finished by another process would
        assert source.wait_finished(10.0), source.counters()
    finally:
        source.stop(2.0)
    c = source.counters()
    assert c["reopen_count"] == 1 and c["frames_processed"] == 25 == len(sink.recent())


def test_looping_file_picks_up_a_replaced_file(
    tmp_path: Path, make_video: VideoFactory, make_agent: AgentFactory
) -> None:
    path = tmp_path / "loop.avi"
    os.replace(make_video("a.avi", frames=5), path)
    agent = make_agent(f'source = "{path}"\nfps = 10\nloop = true\nreopen_min_s = 0.02\nreopen_max_s = 0.1')
    sink = MemoryEventSink()
    source = CameraSource.from_agent(agent, sink)
    source.start()
    try:
        wait_for(lambda: source.counters()["frames_processed"] >= 12)  # looped at least twice
        os.replace(make_video("b.avi", frames=9), path)
        wait_for(lambda: any(e.frame == 8 for e in sink.recent()))  # frame 8 exists only in the new file
    finally:
        source.stop(2.0)
    assert not source.wait_finished(0) and source.counters()["frames_failed"] == 0


def test_corrupt_file_counts_errors_and_stop_is_prompt(tmp_path: Path, make_agent: AgentFactory) -> None:
    bad = tmp_path / "bad.avi"
    bad.write_bytes(b"this is not a video" * 100)
    agent = make_agent(f'source = "{bad}"\nreopen_min_s = 0.05\nreopen_max_s = 5')
    source = CameraSource.from_agent(agent, MemoryEventSink())
    source.start()
    wait_for(lambda: source.counters()["read_errors"] >= 2)
    started = time.monotonic()
    source.stop(1.0)
    assert time.monotonic() - started < 1.5
    assert source.state == "stopped" and source.counters()["frames_processed"] == 0
    assert not any(t.name.startswith("camera-") and t.is_alive() for t in threading.enumerate())
