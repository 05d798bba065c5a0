"""Real digits on larger canvases, with boxes: the data the digit detectors learn from.

Each canvas is 64x64 gray (0..1) holding 1-3 real scikit-learn digits, each resized to 12-20
pixels and placed without overlap. Training canvases use only the digits of the training split
and held-out canvases only the held-out digits (the same 70/30 split, seed 0, as every model
card), so detection figures are on digits no model has seen."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CANVAS = 64
MIN_SIZE, MAX_SIZE = 12, 20
MAX_DIGITS = 3


@dataclass(frozen=True)
class Canvases:
    images: np.ndarray  # (N, 1, 64, 64) float32, 0..1 (NCHW, the detectors' input)
    boxes: list[np.ndarray]  # per image (k, 4) float32 xyxy, normalized 0..1
    classes: list[np.ndarray]  # per image (k,) int64 digit values


def _resize(img: np.ndarray, size: int) -> np.ndarray:
    import cv2

    return cv2.resize(img.astype(np.float32), (size, size), interpolation=cv2.INTER_LINEAR)


def make_canvases(digits: np.ndarray, labels: np.ndarray, count: int, seed: int) -> Canvases:
    """`count` canvases from `digits` ((M, 8, 8) uint8 images) and their labels."""
    rng = np.random.default_rng(seed)
    images = np.zeros((count, 1, CANVAS, CANVAS), dtype=np.float32)
    all_boxes, all_classes = [], []
    for n in range(count):
        want = int(rng.integers(1, MAX_DIGITS + 1))
        placed: list[tuple[int, int, int]] = []
        classes = []
        for _ in range(want * 20):  # bounded retries to find free room
            if len(placed) == want:
                break
            size = int(rng.integers(MIN_SIZE, MAX_SIZE + 1))
            x, y = (int(v) for v in rng.integers(0, CANVAS - size + 1, size=2))
            if any(
                x < px + ps + 1 and px < x + size + 1 and y < py + ps + 1 and py < y + size + 1
                for px, py, ps in placed
            ):
                continue
            pick = int(rng.integers(0, len(digits)))
            patch = _resize(digits[pick] / 255.0, size)
            region = images[n, 0, y : y + size, x : x + size]
            np.maximum(region, patch, out=region)
            placed.append((x, y, size))
            classes.append(int(labels[pick]))
        noise = rng.normal(0.0, 0.03, size=(CANVAS, CANVAS)).astype(np.float32)
        images[n, 0] = np.clip(images[n, 0] + noise, 0.0, 1.0)
        all_boxes.append(
            np.array([[x, y, x + s, y + s] for x, y, s in placed], dtype=np.float32).reshape(-1, 4) / CANVAS
        )
        all_classes.append(np.array(classes, dtype=np.int64))
    return Canvases(images, all_boxes, all_classes)


def canvas_splits(train_count: int = 3000, held_count: int = 400) -> tuple[Canvases, Canvases]:
    """(training canvases, held-out canvases) from the digits' 70/30 split."""
    from edgecascade.tools.datasets import load_split

    train, held = load_split()
    return (
        make_canvases(train.images, train.labels, train_count, seed=1),
        make_canvases(held.images, held.labels, held_count, seed=2),
    )
