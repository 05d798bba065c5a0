"""The camera source of the device daemon: a reader thread samples frames from OpenCV into a
bounded queue, a worker thread answers each one (a classifier's cascade, or a detector's
detection cascade: edge/sources/frames.py) and publishes its events. A source that drops out
is reopened with backoff; one that opens but gives no frames (or frames too large for the
memory budget) is down like one that cannot be opened: one log line per outage, not per try."""

from __future__ import annotations

import logging
import math
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
    SourceUnavailable,
    frame_size,
    open_capture,
    stream_fps,
)
from edgecascade.edge.sources.events import EventSink
from edgecascade.edge.sources.frame_queue import SESSION_END, Frame, FrameQueue
from edgecascade.edge.sources.frames import ClassifierFrames, FrameAnswerer, frame_answerer

if TYPE_CHECKING:
    from edgecascade.edge.agent import Agent

log = logging.getLogger(__name__)

StreamEnd = Literal["ended", "stopped"]
_LOG_EVERY = 100  # repeated problems (skips, failed frames) are logged on the 1st and every 100th
_MIB = 1 << 20
#: The frames in flight (queued, and the one each thread holds) may take this share of the
#: profile's memory_budget_mb; a frame larger than it is refused.
_FRAME_SHARE = 4
#: stop() waits this long for a reader inside OpenCV (an open or read waiting for its
#: timeout cannot be interrupted); past it the reader ends on its own when the call returns.
_READER_GRACE_S = 0.5
#: A file frame that does not decode: this many more reads to find the next one that does.
_REGRAB_TRIES = 8


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
        memory_budget_mb: int = 1024,
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
        self.max_frame_bytes = memory_budget_mb * _MIB // _FRAME_SHARE
        self._queue = FrameQueue(section.queue_size, self.max_frame_bytes)
        self._backoff = Backoff(section.reopen_min_s, section.reopen_max_s)
        self._down_since: float | None = None  # when the current outage began; None while up
        self._state_lock = threading.Lock()
        self._truncation_logged = False
        self._stretches_at_open = 0
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
        self.frames_corrupt = 0  # frames of a file skipped over because they do not decode
        self.corrupt_stretches = 0
        self.frames_too_large = 0  # frames over max_frame_bytes, dropped as read
        self.queue_high_water = 0

    @classmethod
    def from_agent(
        cls, agent: Agent, sink: EventSink, *, clock: Callable[[], float] = time.time
    ) -> CameraSource:
        """The daemon's way in: the profile's [camera] section, the model it names (a classifier or
        a detector; default the first classifier) and the device id."""
        p = agent.profile
        frames = frame_answerer(p, agent)
        return cls(
            p.camera, frames, sink, device=p.device_id, clock=clock, memory_budget_mb=p.memory_budget_mb
        )

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
        self._queue.close()  # a reader waiting for room stops waiting; the worker answers what is queued
        reader, worker = self._threads or (None, None)
        if reader is not None:
            reader.join(min(_READER_GRACE_S, max(0.0, deadline - time.monotonic())))
            if reader.is_alive():
                log.info(
                    "camera %s: the reader is inside OpenCV (opening or reading); it ends when that returns",
                    self.spec.name,
                )
        if worker is not None:
            worker.join(max(0.0, deadline - time.monotonic()))
            if worker.is_alive():
                self._abandon.set()  # out of time: finish the frame in hand, leave the rest
                worker.join(1.0)
        left = self._queue.drain()
        if left:
            self.frames_skipped += left
            log.warning(
                "camera %s stopped with %d queued frames not answered (counted as skipped)",
                self.spec.name,
                left,
            )
        with self._state_lock:
            self.state = "stopped"

    # -- for the daemon, metrics and tests -----------------------------------------------
    def wait_finished(self, timeout_s: float) -> bool:
        """True once a file source (without loop) has been read to its end and every sampled frame answered."""
        return self._finished.wait(timeout_s)

    def counters(self) -> dict[str, int]:
        """Frame and delivery counters. frames_sampled = frames_processed + frames_failed +
        frames_skipped + whatever is still queued; frames_corrupt (a file's frames that did not
        decode, read past) and frames_too_large (over max_frame_bytes) are outside it."""
        return {
            "frames_read": self.frames_read,
            "frames_sampled": self.frames_sampled,
            "frames_processed": self.frames_processed,
            "frames_skipped": self.frames_skipped,
            "frames_failed": self.frames_failed,
            "reopen_count": self.reopen_count,
            "read_errors": self.read_errors,
            "frames_corrupt": self.frames_corrupt,
            "frames_too_large": self.frames_too_large,
            "queue_high_water": self.queue_high_water,
            **self.sink.counters(),
        }

    # -- reader thread --------------------------------------------------------------------
    def _read_loop(self) -> None:
        try:
            while not self._stop.is_set():
                self._set_state("opening")
                try:
                    cap = self._open()
                except SourceUnavailable as exc:
                    self._down(f"cannot be opened: {exc}")
                    continue
                try:
                    end, frames = self._read_stream(cap)
                finally:
                    cap.release()
                if end == "stopped":
                    break
                if frames:
                    self._queue.put(SESSION_END)  # what it tracked ends with the session
                if frames and self.spec.kind == "file":
                    if self.section.loop:
                        continue
                    log.info("camera %s: end of file after %d frames", self.spec.name, self.frames_read)
                    self._set_state("ended")
                    return
                self._down(f"dropped out after {frames} frames" if frames else "gave no frame after opening")
        finally:
            self._reader_done.set()

    def _open(self) -> cv2.VideoCapture:
        cap = open_capture(self.spec, self.section.stream_timeout_s, self._stop)
        width, height = frame_size(cap)
        if width * height * 3 > self.max_frame_bytes:
            cap.release()
            raise SourceUnavailable(
                f"its {width}x{height} frames ({width * height * 3 / _MIB:.0f} MiB each) are over the "
                f"camera's share of the memory budget ({self.max_frame_bytes / _MIB:.0f} MiB, "
                f"1/{_FRAME_SHARE} of memory_budget_mb)"
            )
        return cap

    def _down(self, why: str) -> None:
        """One failed try: counted, logged once per outage, then the backoff's wait."""
        if self._stop.is_set():  # an open cut short by stop(), or one that returned after it
            return
        self.read_errors += 1
        self._set_state("down")
        if self._down_since is None:
            self._down_since = time.monotonic()
            log.warning(
                "camera %s %s; retrying with backoff (%.3g..%.3g s)",
                self.spec.name,
                why,
                self._backoff.min_s,
                self._backoff.max_s,
            )
        self._stop.wait(self._backoff.next_delay())

    def _up(self) -> None:
        """A frame came: the source is back (an open that gives no frame is not)."""
        self._set_state("running")
        if self._down_since is not None:
            self.reopen_count += 1
            log.info(
                "camera %s is back after %.1f s and %d attempts",
                self.spec.name,
                time.monotonic() - self._down_since,
                self._backoff.attempts,
            )
            self._down_since = None
        self._backoff.reset()

    def _set_state(self, state: Literal["opening", "running", "down", "ended"]) -> None:
        with self._state_lock:  # a reader that outlived stop() (inside OpenCV) leaves "stopped" be
            if self.state != "stopped":
                self.state = state

    def _sampler(self, cap: cv2.VideoCapture) -> tuple[FrameSampler, float | None]:
        source_fps = stream_fps(cap)
        if self.spec.kind == "file":
            if source_fps is None:
                log.warning(
                    "file %s reports no usable frame rate (%.6g); answering every frame",
                    self.spec.name,
                    cap.get(cv2.CAP_PROP_FPS),
                )
            return IndexSampler(self.section.fps, source_fps or self.section.fps), source_fps
        return ClockSampler(self.section.fps), source_fps

    def _read_stream(self, cap: cv2.VideoCapture) -> tuple[StreamEnd, int]:
        """Frames until the source ends or stops; how it ended and how many frames it gave."""
        sampler, source_fps = self._sampler(cap)
        pace = self.section.realtime and self.spec.kind == "file" and source_fps is not None
        started = time.monotonic()
        index = 0  # frames read since open (past damage in a file, its true place is not known)
        self._stretches_at_open = self.corrupt_stretches
        frames = 0
        while not self._stop.is_set():
            if pace and source_fps is not None:
                wait = started + index / source_fps - time.monotonic()
                if wait > 0 and self._stop.wait(wait):
                    break
            grabbed = _grab(cap, self.spec.name)
            if not grabbed and frames and self.spec.kind == "file":
                grabbed = self._past_damage(cap, index)
            if not grabbed:
                return "ended", frames
            if frames == 0:
                self._up()
            frames += 1
            self.frames_read += 1
            frame_no, index = index, index + 1
            if not sampler.keep(frame_no):
                continue
            ok, image = cap.retrieve()
            if not ok or image is None:
                self.read_errors += 1
                continue
            if image.nbytes > self.max_frame_bytes:
                self._too_large(image)
                continue
            self.frames_sampled += 1
            self._enqueue((frame_no, self.clock(), image))
        return "stopped", frames

    def _past_damage(self, cap: cv2.VideoCapture, index: int) -> bool:
        """Frame `index` of a file does not decode though its header counts more frames: FFmpeg
        finds the next whole frame within a few reads. True with that frame grabbed; False at
        the true end (a file cut short). No seeking: past damage the file's own frame numbers
        no longer match the frames read, and a seek by them would answer frames twice."""
        total = cap.get(cv2.CAP_PROP_FRAME_COUNT)
        if not (math.isfinite(total) and index < total):
            return False
        for lost in range(1, _REGRAB_TRIES + 1):
            if _grab(cap, self.spec.name):
                self.frames_corrupt += lost
                self.corrupt_stretches += 1
                if self.corrupt_stretches % _LOG_EVERY == 1:
                    log.warning(
                        "camera %s: a frame after frame %d does not decode; read on past it (%d so far)",
                        self.spec.name,
                        index - 1,
                        self.frames_corrupt,
                    )
                return True
        # Damage also drops frames unseen; the count is telling only for a file without any.
        if self.corrupt_stretches == self._stretches_at_open and not self._truncation_logged:
            self._truncation_logged = True  # once: a looping file would say it at every pass
            log.warning(
                "camera %s: the file ends at frame %d though its header counts %d (truncated?)",
                self.spec.name,
                index,
                int(total),
            )
        return False

    def _too_large(self, image: np.ndarray) -> None:
        self.frames_too_large += 1
        if self.frames_too_large % _LOG_EVERY == 1:
            log.warning(
                "camera %s: a %dx%d frame (%.0f MiB) is over the camera's share of the memory budget "
                "(%.0f MiB); dropped (%d so far)",
                self.spec.name,
                image.shape[1],
                image.shape[0],
                image.nbytes / _MIB,
                self.max_frame_bytes / _MIB,
                self.frames_too_large,
            )

    def _enqueue(self, frame: Frame) -> None:
        # A live source cannot wait for room; a file waits (until stop() closes the queue).
        if self._queue.put(frame, timeout_s=0.0 if self.drop_when_full else None):
            self.queue_high_water = max(self.queue_high_water, self._queue.frames)
            return
        self.frames_skipped += 1  # stopping while waiting for room is counted like any skip
        if not self._stop.is_set() and self.frames_skipped % _LOG_EVERY == 1:
            log.warning(
                "camera %s: answering is slower than %.3g fps; %d frames skipped so far",
                self.spec.name,
                self.section.fps,
                self.frames_skipped,
            )

    # -- worker thread --------------------------------------------------------------------
    def _work_loop(self) -> None:
        while not self._abandon.is_set():
            try:
                frame = self._queue.get(timeout_s=0.05)
            except queue.Empty:
                # Stopping need not wait for a reader stuck inside OpenCV: it queues nothing more.
                if (self._reader_done.is_set() or self._stop.is_set()) and self._queue.empty():
                    break
                continue
            if frame is SESSION_END:
                self._end_objects()
            else:
                self._answer(frame)
        try:
            self._end_objects()
        finally:
            if self._reader_done.is_set() and self._queue.empty() and self.state == "ended":
                self._finished.set()

    def _end_objects(self) -> None:
        for event in self.frames.finish(ts=self.clock(), device=self.device, source=self.spec.name):
            self.sink.publish(event)

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


def _grab(cap: cv2.VideoCapture, name: str) -> bool:
    try:
        return bool(cap.grab())
    except cv2.error as exc:
        log.debug("grab from %s raised %s", name, exc)
        return False
