"""A labelled folder, `DIR/<label>/*` with images (.png, .jpg, .jpeg) or .npy arrays, read
into a classifier's input batch with the model card's own input pipeline
(shared/input_pipeline.py, the code the agent runs on every request), and split into
validation and held-out parts, seeded and stratified."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgecascade.edge.inputs import read_input_bytes
from edgecascade.edge.local_model import LocalModel
from edgecascade.shared.errors import InputError
from edgecascade.shared.features.array_file import read_array_file
from edgecascade.shared.input_pipeline import prepare_input

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
ARRAY_SUFFIXES = (".npy",)


@dataclass(frozen=True)
class Examples:
    """Prepared model inputs (N, ...) with their label indices (N,) and source files."""

    inputs: np.ndarray
    labels: np.ndarray
    files: list[Path]

    def take(self, index: np.ndarray) -> Examples:
        return Examples(self.inputs[index], self.labels[index], [self.files[i] for i in index])


def read_folder(root: Path, model: LocalModel) -> Examples:
    """Every example under `root`, prepared for `model`'s input. InputError naming the folder
    or file for a missing or empty folder, a folder that is not one of the card's labels, a
    file of another kind, or one the pipeline cannot read."""
    labels = model.card.labels
    known = ", ".join(labels) if labels else "(none: the card lists no labels)"
    layout = f"expected {root}/<label>/*{{{','.join(IMAGE_SUFFIXES + ARRAY_SUFFIXES)}}} with labels {known}"
    if not root.is_dir():
        raise InputError(f"data folder {root} does not exist or is not a folder; {layout}")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    loose = sorted(p.name for p in root.iterdir() if p.is_file() and _kind(p) is not None)
    if loose:  # examples outside a label folder would otherwise be skipped unseen
        raise InputError(f"{root}: {', '.join(loose[:3])} not inside a label folder; {layout}")
    unknown = [f.name for f in folders if f.name not in labels]
    if unknown:
        raise InputError(
            f"{root}: folder(s) {', '.join(unknown)} are not labels of model {model.card.name!r}; "
            f"its card's labels are {known}"
        )
    card_input = next((t for t in model.card.inputs if t.name == model.input_name), None)
    spec = next(s for s in model.backend.signature.inputs if s.name == model.input_name)
    rows: list[np.ndarray] = []
    targets: list[int] = []
    files: list[Path] = []
    for folder in folders:
        for path in sorted(p for p in folder.iterdir() if not p.name.startswith(".")):
            rows.append(_prepare(path, card_input, spec))
            targets.append(labels.index(folder.name))
            files.append(path)
    if not rows:
        raise InputError(f"data folder {root} holds no examples; {layout}")
    return Examples(np.concatenate(rows), np.array(targets, dtype=np.int64), files)


def _kind(path: Path) -> str | None:
    suffix = path.suffix.lower()
    return "image" if suffix in IMAGE_SUFFIXES else "array" if suffix in ARRAY_SUFFIXES else None


def _prepare(path: Path, card_input: object, spec: object) -> np.ndarray:
    kind = _kind(path)
    value: object
    # Bounded reads: a FIFO or a device among the examples is refused, not read forever, and
    # a .npy whose header claims terabytes is refused before numpy allocates them.
    if kind == "image":
        value = np.array([read_input_bytes(path)], dtype=object)
    elif kind == "array":
        value = read_array_file(path)[""]
    else:
        kinds = ", ".join(IMAGE_SUFFIXES + ARRAY_SUFFIXES)
        raise InputError(f"{path}: unsupported file kind {path.suffix or '(none)'!r}; expected {kinds}")
    try:
        batch = prepare_input(value, card_input, spec)  # type: ignore[arg-type]
    except InputError as exc:
        raise InputError(f"{path}: {exc}") from None
    if batch.shape[0] != 1:
        raise InputError(f"{path}: holds {batch.shape[0]} examples; expected one per file")
    return batch


def split(examples: Examples, val_fraction: float, seed: int) -> tuple[Examples, Examples]:
    """(validation, held-out): `val_fraction` of every label's examples, chosen with `seed`,
    goes to validation (at least one per label when the label has two or more)."""
    if not 0.0 < val_fraction < 1.0:
        raise InputError(f"--val-fraction must be between 0 and 1, got {val_fraction}")
    rng = np.random.default_rng(seed)
    val: list[int] = []
    held: list[int] = []
    for label in np.unique(examples.labels):
        members = rng.permutation(np.flatnonzero(examples.labels == label))
        k = int(round(val_fraction * len(members)))
        k = min(max(k, 1), len(members) - 1) if len(members) > 1 else len(members)
        val += members[:k].tolist()
        held += members[k:].tolist()
    if not held:
        raise InputError("too few examples to keep a held-out part; add examples or lower --val-fraction")
    return examples.take(np.sort(val)), examples.take(np.sort(held))
