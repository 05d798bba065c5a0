"""Opening an OpenCV capture (device index, file or stream URL) and choosing which frames to keep."""

from __future__ import annotations

import logging
import math
import os
import re
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

import cv2

from edgecascade.edge.config.camera import STREAM_SCHEMES
from edgecascade.shared.errors import EdgecascadeError

log = logging.getLogger(__name__)

SourceKind = Literal["device", "file", "stream"]

# user:password@ up to the last @ before the path (FFmpeg splits there too: "p@ss" is one password),
# and the values of query parameters that carry secrets (IP cameras' ?user=admin&pwd=...).
_USERINFO = re.compile(r"://[^/?#]*@")
_SECRET_PARAM = re.compile(
    r"([?&;](?:pass(?:word|wd)?|pwd|token|access_token|api_?key|key|secret|auth|sig(?:nature)?)=)[^&;#]*",
    re.IGNORECASE,
)


class SourceUnavailable(EdgecascadeError):
    """The source cannot be opened now; the message says why and is safe to log (no credentials)."""


@dataclass(frozen=True)
class SourceSpec:
    """What the configured `source` string means. `name` is safe to log and publish:
    credentials in a stream URL are replaced by ***."""

    kind: SourceKind
    target: str | int
    name: str

    @classmethod
    def parse(cls, source: str) -> SourceSpec:
        if source.isdigit():
            return cls("device", int(source), f"device:{source}")
        if source.lower().startswith(STREAM_SCHEMES) or re.match(r"^\w+://", source):
            return cls("stream", source, redact(source))
        return cls("file", source, source)

    @property
    def live(self) -> bool:
        """Live sources produce frames whether or not we keep up; files wait for us."""
        return self.kind != "file"


def redact(url: str) -> str:
    """`url` with its credentials (user:password@, secret query values) replaced by ***."""
    return _SECRET_PARAM.sub(r"\1***", _USERINFO.sub("://***@", url, count=1))


def open_capture(spec: SourceSpec, timeout_s: float, cancel: threading.Event) -> cv2.VideoCapture:
    """Open the source, or raise SourceUnavailable saying why it cannot be opened now (missing
    file, no device, stream down); the caller retries with backoff. `cancel` (the source
    stopping) cuts short an open that waits for a FIFO's writer."""
    try:
        if spec.kind == "stream":
            ms = int(timeout_s * 1000)
            params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms]
            cap = cv2.VideoCapture(str(spec.target), cv2.CAP_FFMPEG, params)
        elif spec.kind == "device":
            if int(spec.target) >= 1 << 31:
                raise SourceUnavailable(f"device index {spec.target} is past any camera (a C int)")
            cap = cv2.VideoCapture(int(spec.target))
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # keep the newest frame, not a backlog
        else:
            cap = _open_file(str(spec.target), timeout_s, cancel)
    except cv2.error as exc:  # OpenCV's own refusal, as one line
        raise SourceUnavailable(f"OpenCV refuses it: {redact(' '.join(str(exc).split()))[:300]}") from None
    if not cap.isOpened():
        cap.release()
        raise SourceUnavailable(_why_not_opened(spec, timeout_s))
    return cap


def _open_file(path: str, timeout_s: float, cancel: threading.Event) -> cv2.VideoCapture:
    try:
        mode = os.stat(path).st_mode
    except OSError:  # missing, or a pattern OpenCV expands (frames/%04d.png): OpenCV decides
        mode = 0
    if stat.S_ISDIR(mode):
        raise SourceUnavailable("it is a directory, not a video file")
    if not stat.S_ISFIFO(mode):
        return cv2.VideoCapture(path)
    # FFmpeg's open(2) of a FIFO waits for a writer, for ever and past stop(): after timeout_s
    # (or at cancel) a writer that comes and goes at once wakes it with an end of file. FFmpeg
    # alone opens it: the next backends OpenCV would try open it again, each a reader that may
    # take a writer's first bytes and leave it a broken pipe.
    opened = threading.Event()

    def wake() -> None:
        deadline = time.monotonic() + timeout_s
        while not opened.wait(0.05):
            if cancel.is_set() or time.monotonic() >= deadline:
                try:
                    os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
                except OSError:  # ENXIO: no reader waits (yet); try again on the next tick
                    pass

    waker = threading.Thread(target=wake, name="camera-fifo-wake", daemon=True)
    waker.start()
    try:
        return cv2.VideoCapture(path, cv2.CAP_FFMPEG)
    finally:
        opened.set()
        waker.join()


def _why_not_opened(spec: SourceSpec, timeout_s: float) -> str:
    if spec.kind == "stream":
        return f"not reachable or not a video stream (timeout {timeout_s:.3g} s)"
    if spec.kind == "device":
        return "no such camera, or it is busy"
    try:
        info = os.stat(str(spec.target))
    except OSError as exc:  # missing, or a pattern that matches no file
        return exc.strerror or type(exc).__name__
    if stat.S_ISFIFO(info.st_mode):
        return f"a FIFO that no process wrote a video to within {timeout_s:.3g} s"
    if info.st_size == 0 and stat.S_ISREG(info.st_mode):
        return "the file is empty"
    return f"not a video OpenCV can read ({info.st_size} bytes)"


def frame_size(cap: cv2.VideoCapture) -> tuple[int, int]:
    """Width and height of the frames the opened source announces; (0, 0) when it announces none."""
    width, height = cap.get(cv2.CAP_PROP_FRAME_WIDTH), cap.get(cv2.CAP_PROP_FRAME_HEIGHT)
    if not (math.isfinite(width) and math.isfinite(height)) or width <= 0 or height <= 0:
        return 0, 0
    return int(width), int(height)


def stream_fps(cap: cv2.VideoCapture) -> float | None:
    """The frame rate the container or device reports, or None when it reports none."""
    fps = float(cap.get(cv2.CAP_PROP_FPS))
    return fps if math.isfinite(fps) and 0 < fps < 10_000 else None


class FrameSampler(Protocol):
    """Decides, per frame read, whether it is one of the `fps` frames a second we answer."""

    def keep(self, index: int) -> bool:
        """`index` counts frames read since the source was opened, from 0."""


class IndexSampler:
    """Files (and streams with a known rate): keep frame i when floor(i * fps / source_fps) steps,
    so a 30 fps file sampled at 10 fps keeps frames 0, 3, 6, ... independent of wall time."""

    def __init__(self, fps: float, source_fps: float) -> None:
        self.ratio = min(1.0, fps / source_fps)

    def keep(self, index: int) -> bool:
        # The small epsilon absorbs float error at exact multiples (3 * 10/30 = 0.999...).
        return math.floor(index * self.ratio + 1e-9) != math.floor((index - 1) * self.ratio + 1e-9)


class ClockSampler:
    """Live sources: keep the first frame at or after each 1/fps tick of a monotonic clock.
    Cameras misreport their rate (low light halves it), so the clock decides, not the index."""

    def __init__(self, fps: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.period = 1.0 / fps
        self.clock = clock
        self.due: float | None = None

    def keep(self, index: int) -> bool:
        now = self.clock()
        if self.due is None or index == 0 or now >= self.due:
            # Schedule from the previous tick, but never let a stall build up a burst of catch-up.
            base = now if self.due is None or now - self.due > self.period else self.due
            self.due = base + self.period
            return True
        return False
