"""[camera]: a camera or video source sampled at a fixed rate, its answers published as events."""

import re
from pathlib import Path
from typing import Literal, Self

from pydantic import Field, ValidationInfo, field_validator, model_validator

from edgecascade.edge.config.base import Section

#: Sources OpenCV opens as network streams rather than files.
STREAM_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://")


class CameraSection(Section):
    enabled: bool = Field(False, description="Run the camera source in the daemon.")
    model: str | None = Field(
        None,
        description="The served model that answers the frames: a classifier (one event per frame) or a "
        "detector (one event per tracked object: new, update, end); default: the first classifier.",
    )
    source: str = Field(
        "0",
        description='What to open: a device index ("0" = /dev/video0), a video file path (relative '
        "to the profile file), or a stream URL such as rtsp://user:pass@host/stream.",
    )
    fps: float = Field(
        5.0,
        gt=0,
        le=240,
        description="Frames per second to sample and answer. Files are sampled by frame index "
        "(a 30 fps file at 10 fps uses every 3rd frame); live sources by the clock.",
    )
    loop: bool = Field(False, description="Files only: start the file again when it ends.")
    realtime: bool = Field(
        False,
        description="Files only: read at the file's own frame rate, like a live camera, skipping "
        "frames when the pipeline falls behind; false reads as fast as frames are answered.",
    )
    queue_size: int = Field(
        4,
        ge=1,
        le=1024,
        description="Bounded queue between reader and worker; a live source skips (and counts) "
        "frames while it is full instead of growing memory.",
    )
    reopen_min_s: float = Field(
        0.5, gt=0, description="First wait before reopening a source that dropped out or is missing."
    )
    reopen_max_s: float = Field(
        30.0, gt=0, description="Longest wait between reopen attempts (the wait doubles up to this)."
    )
    stream_timeout_s: float = Field(
        10.0, gt=0, description="Network streams: open and read timeout before the source counts as down."
    )
    publish_events: bool = Field(
        True,
        description="Publish the answered frames' events (one per frame, or per detected object) to the "
        "device's events topic.",
    )
    track_iou: float = Field(
        0.3,
        gt=0.0,
        le=1.0,
        description="Detectors: a detection overlapping an object of the same label seen lately by this IoU "
        "is that object again (an update event, not a new one).",
    )
    track_lost_frames: int = Field(
        2, ge=1, le=1000, description="Detectors: an object not seen in this many answered frames ends."
    )
    event_qos: Literal[0, 1] = Field(
        0, description="MQTT QoS of events: 0 = fire and forget (live detections), 1 = acknowledged."
    )

    @field_validator("source")
    @classmethod
    def _resolve_file(cls, source: str, info: ValidationInfo) -> str:
        # A relative file path is relative to the profile file, like every ProfilePath. No I/O here.
        source = source.strip()
        if not source:
            raise ValueError("expected a device index, a file path or a stream URL, got an empty string")
        if source.isdigit() or source.lower().startswith(STREAM_SCHEMES) or re.match(r"^\w+://", source):
            return source
        path = Path(source).expanduser()
        base = (info.context or {}).get("base_dir")
        if base is not None and not path.is_absolute():
            path = (Path(base) / path).resolve()
        return str(path)

    @model_validator(mode="after")
    def _backoff_order(self) -> Self:
        if self.reopen_min_s > self.reopen_max_s:
            raise ValueError(
                f"reopen_min_s ({self.reopen_min_s}) must not exceed reopen_max_s ({self.reopen_max_s})"
            )
        return self
