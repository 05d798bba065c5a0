"""A drifting stream made from the real held-out digits: clean, then blurred, then noisy, then
clean again. Corruptions are applied to the raw uint8 images with OpenCV (Gaussian blur) and
seeded Gaussian noise, then encoded with the shared encoding, exactly as a device would."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from edgecascade.tools.datasets import Split, encode_images


@dataclass(frozen=True)
class Segment:
    """One stretch of the stream: `blur_sigma` (0 = none) then `noise_std` (0 = none) in grey levels."""

    name: str
    blur_sigma: float = 0.0
    noise_std: float = 0.0


DEFAULT_SEGMENTS = (
    Segment("clean"),
    Segment("blurred", blur_sigma=0.8),
    Segment("noisy", noise_std=60.0),
    Segment("clean again"),
)


@dataclass(frozen=True)
class DriftStream:
    features: np.ndarray  # (N, 64) float32, encoded
    labels: np.ndarray  # (N,) int64
    segment: np.ndarray  # (N,) index into `segments`
    segments: tuple[Segment, ...]


def corrupt(images: np.ndarray, segment: Segment, rng: np.random.Generator) -> np.ndarray:
    """Apply a segment's blur, then its noise, to raw uint8 images."""
    import cv2

    out = images
    if segment.blur_sigma > 0:
        out = np.stack([cv2.GaussianBlur(img, (0, 0), segment.blur_sigma) for img in out])
    if segment.noise_std > 0:
        noisy = out.astype(np.float32) + rng.normal(0.0, segment.noise_std, out.shape)
        out = np.clip(np.round(noisy), 0, 255).astype(np.uint8)
    return out


def drift_stream(
    held: Split,
    *,
    repeats_per_segment: int = 3,
    segments: Sequence[Segment] = DEFAULT_SEGMENTS,
    seed: int = 0,
) -> DriftStream:
    """Each segment is the held-out set `repeats_per_segment` times, shuffled, corrupted anew
    each repeat (fresh noise), so 540 digits x 3 x 4 segments = 6,480 requests by default."""
    rng = np.random.default_rng(seed)
    feats, labels, seg_ids = [], [], []
    for index, segment in enumerate(segments):
        for _ in range(repeats_per_segment):
            order = rng.permutation(len(held.labels))
            feats.append(encode_images(corrupt(held.images[order], segment, rng)))
            labels.append(held.labels[order])
            seg_ids.append(np.full(len(order), index))
    return DriftStream(
        np.concatenate(feats).astype(np.float32),
        np.concatenate(labels),
        np.concatenate(seg_ids),
        tuple(segments),
    )
