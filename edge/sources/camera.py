"""The camera source of the device daemon: a reader thread samples frames from OpenCV into a
bounded queue, a worker thread answers each one (a classifier's cascade, or a detector's
detection cascade: edge/sources/frames.py) and publishes its events. A source that drops out
is reopened with backoff."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Literal

import cv2
import numpy as np

from edgecascade.edge.cascade import Cascade
from edgecascade.edge.config.camera import CameraSection
from edgecascade.edge.sources.backoff import Backoff
from edgecascade.edge.sources.capture import (
    ClockSampler,
    FrameSampler,
    IndexSampler,
    SourceSpec,
    open_capture,
    stream_fps,
)
from edgecascade.edge.sources.events import EventSink
from edgecascade.edge.sources.frames import ClassifierFrames, FrameAnswerer, frame_answerer

if TYPE_CHECKING:
    from edgecascade.edge.agent import Agent

log = logging.getLogger(__name__)

Frame = tuple[int, float, np.ndarray]  # (frame index since open, unix seconds read, BGR image)
StreamEnd = Literal["eof", "dropped", "stopped"]
_LOG_EVERY = 100  # repeated problems (skips, failed frames) are logged on the 1st and every 100th


class CameraSource:
    """A daemon Service. `start()` returns at once (a missing camera is retried in the background),
    `stop(timeout_s)` answers what is already queued if time allows, `counters()` feeds metrics.
    A file without `loop` is read once; `wait_finished()` returns when its last frame is answered."""

    name = "camera"

    def __init__(
        self,
        section: CameraSection,
        frames: FrameAnswerer | Cascade,
        sink: EventSink,
        *,
        device: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.section = section
        # A bare cascade is a classifier's (the way the camera started out).
        self.frames: FrameAnswerer = ClassifierFrames(frames) if isinstance(frames, Cascade) else frames
        self.sink = sink
        self.device = device
        self.clock = clock
        self.spec = SourceSpec.parse(section.source)
        # A live source cannot wait for us: when the queue is full the frame is skipped (counted).
        # A file read faster than real time waits instead, so every sampled frame is answered.
        self.drop_when_full = self.spec.live or section.realtime
        self._queue: queue.Queue[Frame] = queue.Queue(section.queue_size)
        self._stop = threading.Event()
        self._abandon = threading.Event()
        self._reader_done = threading.Event()
        self._finished = threading.Event()
        self._threads: list[threading.Thread] = []
        self.state: Literal["idle", "opening", "running", "down", "ended", "stopped"] = "idle"
        self.frames_read = 0
        self.frames_sampled = 0
        self.frames_skipped = 0
        self.frames_processed = 0
        self.frames_failed = 0
        self.reopen_count = 0
        self.read_errors = 0
        self.queue_high_water = 0

    @classmethod
    def from_agent(
        cls, agent: Agent, sink: EventSink, *, clock: Callable[[], float] = time.time
    ) -> CameraSource:
        """The daemon's way in: the profile's [camera] section, the model it names (a classifier or
        a detector; default the first classifier) and the device id."""
        frames = frame_answerer(agent.profile, agent)
        return cls(agent.profile.camera, frames, sink, device=agent.profile.device_id, clock=clock)

    # -- Service ------------------------------------------------------------------------
    def start(self) -> None:
        if self._threads:
            raise RuntimeError("camera source already started")
        self._threads = [
            threading.Thread(target=self._read_loop, name="camera-reader", daemon=True),
            threading.Thread(target=self._work_loop, name="camera-worker", daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        log.info("camera source %s started at %.3g fps", self.spec.name, self.section.fps)

    def stop(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        self._stop.set()
        reader, worker = self._threads or (None, None)
        if reader is not None:
            reader.join(max(0.0, deadline - time.monotonic()))
        if worker is not None:
            worker.join(max(0.0, deadline - time.monotonic()))
            if worker.is_alive():
                self._abandon.set()  # out of time: finish the frame in hand, leave the rest
                worker.join(1.0)
        left = 0
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
            left += 1
        if left:
            self.frames_skipped += left
            log.warning(
                "camera %s stopped with %d queued frames not answered (counted as skipped)",
                self.spec.name,
                left,
            )
        self.state = "stopped"

    # -- for the daemon, metrics and tests -----------------------------------------------
    def wait_finished(self, timeout_s: float) -> bool:
        """True once a file source (without loop) has been read to its end and every sampled frame answered."""
        return self._finished.wait(timeout_s)

    def counters(self) -> dict[str, int]:
        """Frame and delivery counters. frames_sampled = frames_processed + frames_failed +
        frames_skipped + whatever is still queued."""
        return {
            "frames_read": self.frames_read,
            "frames_sampled": self.frames_sampled,
            "frames_processed": self.frames_processed,
            "frames_skipped": self.frames_skipped,
            "frames_failed": self.frames_failed,
            "reopen_count": self.reopen_count,
            "read_errors": self.read_errors,
            "queue_high_water": self.queue_high_water,
            **self.sink.counters(),
        }

    # -- reader thread --------------------------------------------------------------------
    def _read_loop(self) -> None:
        backoff = Backoff(self.section.reopen_min_s, self.section.reopen_max_s)
        down_since: float | None = None
        try:
            while not self._stop.is_set():
                self.state = "opening"
                try:
                    cap = open_capture(self.spec, self.section.stream_timeout_s)
                except cv2.error as exc:
                    log.debug("opening %s raised %s", self.spec.name, exc)
                    cap = None
                if cap is None:
                    self.read_errors += 1
                    if down_since is None:
                        down_since = time.monotonic()
                        log.warning(
                            "camera %s cannot be opened; retrying with backoff (%.3g..%.3g s)",
                            self.spec.name,
                            backoff.min_s,
                            backoff.max_s,
                        )
                    self.state = "down"
                    self._stop.wait(backoff.next_delay())
                    continue
                if down_since is not None:
                    self.reopen_count += 1
                    log.info(
                        "camera %s is back after %.1f s and %d attempts",
                        self.spec.name,
                        time.monotonic() - down_since,
                        backoff.attempts,
                    )
                    down_since = None
                backoff.reset()
                self.state = "running"
                try:
                    end = self._read_stream(cap)
                finally:
                    cap.release()
                if end == "eof":
                    if self.section.loop:
                        continue
                    log.info("camera %s: end of file after %d frames", self.spec.name, self.frames_read)
                    self.state = "ended"
                    return
                if end == "dropped":
                    self.read_errors += 1
                    down_since = time.monotonic()
                    self.state = "down"
                    log.warning("camera %s dropped out; reopening with backoff", self.spec.name)
                    self._stop.wait(backoff.next_delay())
        finally:
            self._reader_done.set()

    def _sampler(self, cap: cv2.VideoCapture) -> tuple[FrameSampler, float | None]:
        source_fps = stream_fps(cap)
        if self.spec.kind == "file":
            if source_fps is None:
                log.warning("file %s reports no frame rate; answering every frame", self.spec.name)
            return IndexSampler(self.section.fps, source_fps or self.section.fps), source_fps
        return ClockSampler(self.section.fps), source_fps

    def _read_stream(self, cap: cv2.VideoCapture) -> StreamEnd:
        sampler, source_fps = self._sampler(cap)
        pace = self.section.realtime and self.spec.kind == "file" and source_fps is not None
        started = time.monotonic()
        index = 0
        while not self._stop.is_set():
            if pace and source_fps is not None:
                wait = started + index / source_fps - time.monotonic()
                if wait > 0 and self._stop.wait(wait):
                    break
            try:
                grabbed = cap.grab()
            except cv2.error as exc:
                log.debug("grab from %s raised %s", self.spec.name, exc)
                grabbed = False
            if not grabbed:
                # A file that gave frames has ended; one that gave none, or a live source, dropped out.
                return "eof" if self.spec.kind == "file" and index > 0 else "dropped"
            self.frames_read += 1
            frame_no, index = index, index + 1
            if not sampler.keep(frame_no):
                continue
            ok, image = cap.retrieve()
            if not ok or image is None:
                self.read_errors += 1
                continue
            self.frames_sampled += 1
            self._enqueue((frame_no, self.clock(), image))
        return "stopped"

    def _enqueue(self, frame: Frame) -> None:
        if self.drop_when_full:
            try:
                self._queue.put_nowait(frame)
            except queue.Full:
                self.frames_skipped += 1
                if self.frames_skipped % _LOG_EVERY == 1:
                    log.warning(
                        "camera %s: answering is slower than %.3g fps; %d frames skipped so far",
                        self.spec.name,
                        self.section.fps,
                        self.frames_skipped,
                    )
                return
        else:
            while not self._stop.is_set():
                try:
                    self._queue.put(frame, timeout=0.1)
                    break
                except queue.Full:
                    continue
            else:
                self.frames_skipped += 1  # stopping while waiting for room: counted, like any skip
                return
        self.queue_high_water = max(self.queue_high_water, self._queue.qsize())

    # -- worker thread --------------------------------------------------------------------
    def _work_loop(self) -> None:
        while not self._abandon.is_set():
            try:
                frame = self._queue.get(timeout=0.05)
            except queue.Empty:
                if self._reader_done.is_set() and self._queue.empty():
                    break
                continue
            self._answer(frame)
        try:
            for event in self.frames.finish(ts=self.clock(), device=self.device, source=self.spec.name):
                self.sink.publish(event)
        finally:
            if self._reader_done.is_set() and self._queue.empty() and self.state == "ended":
                self._finished.set()

    def _answer(self, frame: Frame) -> None:
        frame_no, ts, image = frame
        try:
            events = self.frames.answer(
                image, frame=frame_no, ts=ts, device=self.device, source=self.spec.name
            )
        except Exception:  # one bad frame (or model trouble) must not stop the camera: counted, logged
            self.frames_failed += 1
            if self.frames_failed % _LOG_EVERY == 1:
                log.exception(
                    "camera %s: frame %d could not be answered (%d so far)",
                    self.spec.name,
                    frame_no,
                    self.frames_failed,
                )
            return
        for event in events:
            self.sink.publish(event)
        self.frames_processed += 1
