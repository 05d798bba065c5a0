"""Opening an OpenCV capture (device index, file or stream URL) and choosing which frames to keep."""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

import cv2

from edgecascade.edge.config.camera import STREAM_SCHEMES

log = logging.getLogger(__name__)

SourceKind = Literal["device", "file", "stream"]


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
            return cls("stream", source, re.sub(r"://[^/@]*@", "://***@", source, count=1))
        return cls("file", source, source)

    @property
    def live(self) -> bool:
        """Live sources produce frames whether or not we keep up; files wait for us."""
        return self.kind != "file"


def open_capture(spec: SourceSpec, timeout_s: float) -> cv2.VideoCapture | None:
    """Open the source, or return None when it cannot be opened now (missing file, no device,
    stream down); the caller retries with backoff."""
    if spec.kind == "stream":
        ms = int(timeout_s * 1000)
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms]
        cap = cv2.VideoCapture(str(spec.target), cv2.CAP_FFMPEG, params)
    elif spec.kind == "device":
        cap = cv2.VideoCapture(int(spec.target))
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # keep the newest frame, not a backlog
    else:
        cap = cv2.VideoCapture(str(spec.target))
    if not cap.isOpened():
        cap.release()
        return None
    return cap


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
