"""The real data the demo models learn from: scikit-learn's copy of the UCI handwritten digits.

Every raw example is an 8x8 uint8 image; training and serving both encode it with
`shared.features.encode_image`, so there is no training-serving skew."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgecascade.shared.features import FeatureSpec, ImageEncoding, encode_image

DATASET_NAME = "sklearn.datasets.load_digits (UCI optical recognition of handwritten digits)"
SPLIT = "30% stratified held-out split (random_state=0); the rest split 80/20 into train/validation"
DIGITS_FEATURES = FeatureSpec(
    input_name="input",
    encoding=ImageEncoding(width=8, height=8, color="gray", scale=1 / 255, layout="flat"),
)
LABELS = [str(d) for d in range(10)]


@dataclass(frozen=True)
class Split:
    images: np.ndarray  # (N, 8, 8) uint8 raw images
    features: np.ndarray  # (N, 64) float32, encoded
    labels: np.ndarray  # (N,) int64


def digit_images() -> tuple[np.ndarray, np.ndarray]:
    """All 1,797 digits as uint8 images (0..16 ink levels stretched to 0..255) and their labels."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)
    return images, digits.target.astype(np.int64)


def encode_images(images: np.ndarray, spec: FeatureSpec = DIGITS_FEATURES) -> np.ndarray:
    assert isinstance(spec.encoding, ImageEncoding)
    return np.stack([encode_image(img, spec.encoding) for img in images]).astype(np.float32)


def load_splits() -> tuple[Split, Split, Split]:
    """(train, validation, held-out). The held-out split is 30% stratified (seed 0, 540 digits)
    and is what every model card reports; validation is 20% of the rest, used to tune
    escalation thresholds so the held-out figures stay honest."""
    from sklearn.model_selection import train_test_split

    images, labels = digit_images()
    idx_rest, idx_held = train_test_split(
        np.arange(len(labels)), test_size=0.3, stratify=labels, random_state=0
    )
    idx_train, idx_val = train_test_split(idx_rest, test_size=0.2, stratify=labels[idx_rest], random_state=0)
    train, val, held = (
        Split(images[i], encode_images(images[i]), labels[i]) for i in (idx_train, idx_val, idx_held)
    )
    return train, val, held


def load_split() -> tuple[Split, Split]:
    """(train, held-out): the split models are trained on and evaluated with."""
    train, _, held = load_splits()
    return train, held
