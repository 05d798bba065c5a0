"""Write the held-out digits as a video file, one digit per frame, with a sidecar of true labels,
for the camera-source demo, tests and benchmark.

    python -m edgecascade.tools.make_video OUT.avi [--fps 10] [--scale 8] [--codec ffv1] [--repeat 1]

Each 8x8 digit is upscaled (nearest neighbour) to a (8*scale)x(8*scale) BGR frame. The default
codec, FFV1, is lossless, so the video path gives the model exactly the pixels of the direct path;
MJPG is lossy (and smaller). The sidecar OUT.labels.json maps frame index -> true label."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import cv2
import numpy as np

from edgecascade.shared.errors import EdgecascadeError

log = logging.getLogger(__name__)

#: FourCC per codec name; all read back by the opencv-python(-headless) wheels' FFmpeg.
CODECS = {"ffv1": "FFV1", "png": "MPNG", "huffyuv": "HFYU", "mjpg": "MJPG"}
LOSSLESS = {"ffv1", "png", "huffyuv"}


def sidecar_path(video: Path) -> Path:
    return video.with_suffix(".labels.json")


def digit_frame(image: np.ndarray, scale: int) -> np.ndarray:
    """One 8x8 uint8 digit -> an upscaled 3-channel BGR frame, as a camera would deliver it."""
    size = (image.shape[1] * scale, image.shape[0] * scale)
    return cv2.cvtColor(cv2.resize(image, size, interpolation=cv2.INTER_NEAREST), cv2.COLOR_GRAY2BGR)


def write_digits_video(
    path: Path,
    images: np.ndarray,
    labels: np.ndarray,
    *,
    fps: float = 10.0,
    scale: int = 8,
    codec: str = "ffv1",
) -> Path:
    """Write `images` (N, h, w) uint8 as frames of `path` and the labels sidecar; returns the sidecar.
    Writes to a temporary name first, so a reader never sees a half-written file."""
    if codec not in CODECS:
        raise EdgecascadeError(f"unknown codec {codec!r}; choose one of {', '.join(sorted(CODECS))}")
    if len(images) != len(labels) or len(images) == 0:
        raise EdgecascadeError(f"need as many labels as images (>0), got {len(images)} and {len(labels)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    first = digit_frame(images[0], scale)
    tmp = path.with_name(f".{path.stem}.partial{path.suffix}")
    writer = cv2.VideoWriter(
        str(tmp), cv2.VideoWriter.fourcc(*CODECS[codec]), fps, (first.shape[1], first.shape[0])
    )
    if not writer.isOpened():
        raise EdgecascadeError(f"OpenCV cannot write {codec} to {path} (is FFmpeg support built in?)")
    try:
        for image in images:
            writer.write(digit_frame(image, scale))
    finally:
        writer.release()
    tmp.replace(path)
    sidecar = sidecar_path(path)
    sidecar.write_text(
        json.dumps(
            {
                "video": path.name,
                "fps": fps,
                "scale": scale,
                "codec": codec,
                "lossless": codec in LOSSLESS,
                "frames": len(labels),
                "labels": [int(v) for v in labels],
            }
        )
    )
    log.info("wrote %d frames (%s, %g fps) to %s", len(labels), codec, fps, path)
    return sidecar


def objects_path(video: Path) -> Path:
    return video.with_suffix(".objects.json")


def write_canvas_video(
    path: Path,
    images: np.ndarray,
    boxes: list[np.ndarray],
    classes: list[np.ndarray],
    *,
    hold: int = 5,
    fps: float = 10.0,
    scale: int = 4,
    codec: str = "ffv1",
) -> Path:
    """Write detector canvases (N, 1, H, W) floats 0..1 (tools/build_detector_data.py), each
    shown for `hold` frames, and a sidecar of each frame's true objects (normalized xyxy box,
    digit). Returns the sidecar."""
    if codec not in CODECS:
        raise EdgecascadeError(f"unknown codec {codec!r}; choose one of {', '.join(sorted(CODECS))}")
    if len(images) == 0 or not len(images) == len(boxes) == len(classes) or hold < 1:
        raise EdgecascadeError(f"need canvases with boxes and classes for each, got {len(images)}")
    frames = [np.rint(np.clip(img[0], 0, 1) * 255).astype(np.uint8) for img in images]
    path.parent.mkdir(parents=True, exist_ok=True)
    first = digit_frame(frames[0], scale)
    tmp = path.with_name(f".{path.stem}.partial{path.suffix}")
    writer = cv2.VideoWriter(
        str(tmp), cv2.VideoWriter.fourcc(*CODECS[codec]), fps, (first.shape[1], first.shape[0])
    )
    if not writer.isOpened():
        raise EdgecascadeError(f"OpenCV cannot write {codec} to {path} (is FFmpeg support built in?)")
    truth = []
    try:
        for frame, b, c in zip(frames, boxes, classes, strict=True):
            objects = [
                {"box": [round(float(v), 5) for v in box], "label": str(int(k))}
                for box, k in zip(b, c, strict=True)
            ]
            bgr = digit_frame(frame, scale)
            for _ in range(hold):
                writer.write(bgr)
                truth.append(objects)
    finally:
        writer.release()
    tmp.replace(path)
    sidecar = objects_path(path)
    sidecar.write_text(
        json.dumps({"video": path.name, "fps": fps, "hold": hold, "frames": len(truth), "objects": truth})
    )
    log.info("wrote %d frames of %d canvases (%s, %g fps) to %s", len(truth), len(frames), codec, fps, path)
    return sidecar


def read_objects(video: Path) -> list[list[dict[str, object]]]:
    """The true objects of each frame index of a video written by write_canvas_video."""
    return list(json.loads(objects_path(video).read_text())["objects"])


def read_labels(video: Path) -> list[int]:
    """The true label of each frame index of a video written by write_digits_video."""
    return list(json.loads(sidecar_path(video).read_text())["labels"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m edgecascade.tools.make_video",
        description="Write the held-out digits (540 images) as a video file plus a labels sidecar, "
        "for the camera source demo and benchmark.",
        epilog="example: python -m edgecascade.tools.make_video /tmp/digits.avi --fps 10 --scale 8 --codec ffv1",
    )
    parser.add_argument("out", type=Path, help="video file to write (.avi or .mkv)")
    parser.add_argument("--fps", type=float, default=10.0, help="frame rate stored in the file")
    parser.add_argument("--scale", type=int, default=8, help="upscale factor of the 8x8 digits")
    parser.add_argument("--codec", choices=sorted(CODECS), default="ffv1", help="ffv1 (lossless) or mjpg")
    parser.add_argument("--repeat", type=int, default=1, help="write the held-out set this many times")
    args = parser.parse_args(argv)
    from edgecascade.tools.datasets import load_split

    _, held = load_split()
    images = np.concatenate([held.images] * args.repeat)
    labels = np.concatenate([held.labels] * args.repeat)
    try:
        sidecar = write_digits_video(
            args.out, images, labels, fps=args.fps, scale=args.scale, codec=args.codec
        )
    except EdgecascadeError as exc:
        parser.exit(2, f"error: {exc}\n")
    print(f"wrote {len(labels)} frames to {args.out} and labels to {sidecar}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
