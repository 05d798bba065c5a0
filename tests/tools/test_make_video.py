"""edgecascade.tools.make_video: real files OpenCV reads back; lossless codecs give the exact digits."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgecascade.shared.errors import EdgecascadeError
from edgecascade.tools.make_video import read_labels, write_digits_video

REPO = Path(__file__).parents[2]


def _frames(path: Path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    return frames


@pytest.mark.parametrize("codec", ["ffv1", "png"])
def test_lossless_video_holds_the_exact_digits(tmp_path: Path, digits_split, codec: str) -> None:
    _, held = digits_split
    video = tmp_path / "d.avi"
    write_digits_video(video, held.images[:20], held.labels[:20], fps=25, scale=4, codec=codec)
    frames = _frames(video)
    assert len(frames) == 20 and frames[0].shape == (32, 32, 3)
    down = [
        cv2.resize(cv2.cvtColor(f, cv2.COLOR_BGR2GRAY), (8, 8), interpolation=cv2.INTER_AREA) for f in frames
    ]
    assert np.array_equal(np.stack(down), held.images[:20])
    assert read_labels(video) == [int(v) for v in held.labels[:20]]
    assert cv2.VideoCapture(str(video)).get(cv2.CAP_PROP_FPS) == 25
    assert not list(tmp_path.glob(".*partial*"))


def test_mjpg_is_readable_but_lossy(tmp_path: Path, digits_split) -> None:
    _, held = digits_split
    video = tmp_path / "d.avi"
    write_digits_video(video, held.images[:10], held.labels[:10], codec="mjpg")
    frames = _frames(video)
    assert len(frames) == 10 and frames[0].shape == (64, 64, 3)
    assert not np.array_equal(cv2.cvtColor(frames[0], cv2.COLOR_BGR2GRAY)[::8, ::8], held.images[0])


def test_bad_arguments_are_named(tmp_path: Path) -> None:
    images = np.zeros((2, 8, 8), np.uint8)
    with pytest.raises(EdgecascadeError, match="unknown codec 'h265'"):
        write_digits_video(tmp_path / "x.avi", images, np.zeros(2), codec="h265")
    with pytest.raises(EdgecascadeError, match="as many labels"):
        write_digits_video(tmp_path / "x.avi", images, np.zeros(3))


def test_command_line(tmp_path: Path) -> None:
    out = tmp_path / "all.mkv"
    result = subprocess.run(
        [sys.executable, "-m", "edgecascade.tools.make_video", str(out), "--fps", "20", "--scale", "2"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "wrote 540 frames" in result.stdout and len(read_labels(out)) == 540 == len(_frames(out))
