"""`agent predict` input files -> one request's inputs by name: an image (for the model's
image input), a WAV clip (for its audio input), a .npy array (for its only input), or a .npz
with one array per input name."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from edgecascade.edge.inputs import (
    AUDIO_SUFFIXES,
    IMAGE_SUFFIXES,
    MAX_INPUT_BYTES,
    check_finite,
    read_input_bytes,
)
from edgecascade.shared.errors import InputError
from edgecascade.shared.features import AudioEncoding, ImageEncoding
from edgecascade.shared.features.array_file import npy_array, npz_arrays
from edgecascade.shared.model_card import ModelCard


def read_request_inputs(
    path: Path, card: ModelCard, max_bytes: int = MAX_INPUT_BYTES
) -> dict[str, np.ndarray]:
    """The inputs by name that the file at `path` holds; InputError naming the file for one
    that is too big, not an input the model takes, or holds NaN or infinity."""
    arrays = _read(path, read_input_bytes(path, max_bytes), card, max_bytes)
    for name, arr in arrays.items():
        try:
            check_finite(name, arr)
        except InputError as exc:
            raise type(exc)(f"{path}: {exc}") from None
    return arrays


def _read(path: Path, data: bytes, card: ModelCard, max_bytes: int) -> dict[str, np.ndarray]:
    suffix = path.suffix.lower()
    state = {p.input for p in card.state}
    feeds = [t for t in card.inputs if t.name not in state]
    try:
        for suffixes, kind, what, name in (
            (IMAGE_SUFFIXES, ImageEncoding, "an image", "image"),
            (AUDIO_SUFFIXES, AudioEncoding, "a WAV clip", "audio"),
        ):
            if suffix in suffixes:
                takers = [t for t in feeds if isinstance(t.pipeline, kind)]
                if len(takers) != 1:
                    raise InputError(
                        f"{path}: {what} needs a model with one {name} "
                        f"input (inputs[].pipeline in the card); {card.name!r} has {len(takers)}; "
                        "pass a .npz with one array per input name"
                    )
                return {takers[0].name: np.array([data], dtype=object)}
        if suffix == ".npy":
            if len(feeds) != 1:
                raise InputError(
                    f"{path}: model {card.name!r} takes {[t.name for t in feeds]}; pass a .npz with one array per input name"
                )
            # The header is checked against the bytes before numpy allocates what it announces.
            return {feeds[0].name: npy_array(data, str(path), finite=False)}
        if suffix == ".npz":
            # The inflated arrays count against the same budget as the file.
            return npz_arrays(data, str(path), max_bytes, finite=False)
    except (ValueError, OSError, zipfile.BadZipFile) as exc:
        raise InputError(f"{path}: {exc}") from None
    raise InputError(
        f"{path}: unsupported input type {suffix!r}; use an image ({', '.join(sorted(IMAGE_SUFFIXES))}), "
        f"a WAV clip ({', '.join(sorted(AUDIO_SUFFIXES))}), .npy or .npz"
    )
