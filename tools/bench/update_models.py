"""Models for the update benchmark: real digits classifiers of a chosen size (a wide
random-feature network whose readout is fitted on the digits training split, so the golden
vectors are real predictions), and two kinds of "fine-tuned" successors for delta updates."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np

from edgecascade.shared.model_card import ModelCard, TensorCard
from edgecascade.tools.bench.wide_model import build_wide_model

REPO = Path(__file__).resolve().parents[2]
FACTORY = REPO / "tests" / "fixtures" / "models" / "digits_edge_fp32.onnx"


def hidden_for(size_mb: float) -> int:
    """Hidden width H so the fp32 weights (64H + H + H*H + 10H floats) take about `size_mb` MiB."""
    floats = size_mb * 1024 * 1024 / 4
    return max(16, int((-75 + math.sqrt(75 * 75 + 4 * floats)) / 2))


def write_card(artifact: Path, version: str, accuracy: float) -> None:
    """A model card for a wide model, based on the factory model's (same name, features, labels)."""
    import hashlib

    base = ModelCard.load_for(FACTORY)
    data = artifact.read_bytes()
    card = base.model_copy(
        update={
            "version": version,
            "file": artifact.name,
            "sha256": hashlib.sha256(data).hexdigest(),
            "size_bytes": len(data),
            "heldout_accuracy": accuracy,
            "outputs": [
                TensorCard(name="label", dtype="int64", shape=[-1]),
                TensorCard(name="probabilities", dtype="float32", shape=[-1, 10]),
            ],
        }
    )
    card.save_beside(artifact)


def sized_model(folder: Path, size_mb: float, version: str) -> Path:
    """Build (once) a digits model of about `size_mb` MiB with its card."""
    path = folder / f"digits_wide_{size_mb:g}mb.onnx"
    if not path.exists():
        accuracy = build_wide_model(path, hidden=hidden_for(size_mb))
        write_card(path, version, accuracy)
    return path


def with_version(src: Path, dst_dir: Path, version: str) -> Path:
    """The same artifact under another version (its own folder, its own card)."""
    dst_dir.mkdir(parents=True, exist_ok=True)
    dst = dst_dir / src.name
    shutil.copyfile(src, dst)
    card = ModelCard.load_for(src).model_copy(update={"version": version})
    card.save_beside(dst)
    return dst


def refit_readout(src: Path, dst_dir: Path, version: str, ridge: float = 3.0) -> Path:
    """Fine-tuning as it is usually done on the device side of a fleet: the feature layers stay,
    the readout is refitted (here with another ridge penalty). Only w3 changes."""
    import onnx
    from onnx import numpy_helper

    from edgecascade.tools.datasets import load_split

    model = onnx.load(str(src))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    train, heldout = load_split()

    def features(x: np.ndarray) -> np.ndarray:
        return np.maximum(np.maximum(x @ inits["w1"] + inits["b1"], 0) @ inits["w2"], 0)

    h = features(train.features).astype(np.float64)
    targets = np.eye(10)[train.labels] * 10.0
    w3 = np.linalg.solve(h.T @ h + ridge * np.eye(h.shape[1]), h.T @ targets).astype(np.float32)
    for init in model.graph.initializer:
        if init.name == "w3":
            init.CopyFrom(numpy_helper.from_array(w3, "w3"))
    accuracy = float(((features(heldout.features) @ w3).argmax(1) == heldout.labels).mean())
    dst_dir.mkdir(parents=True, exist_ok=True)
    dst = dst_dir / src.name
    onnx.save(model, str(dst))
    write_card(dst, version, accuracy)
    return dst


def nudge_all(src: Path, dst_dir: Path, version: str, scale: float = 0.01, seed: int = 0) -> Path:
    """Fine-tuning of every layer: each weight moves by ~1% (every weight byte changes)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(src))
    rng = np.random.default_rng(seed)
    for init in model.graph.initializer:
        arr = numpy_helper.to_array(init)
        if arr.dtype == np.float32 and arr.size > 1:
            arr = arr * (1.0 + scale * rng.standard_normal(arr.shape).astype(np.float32))
            init.CopyFrom(numpy_helper.from_array(arr.astype(np.float32), init.name))
    dst_dir.mkdir(parents=True, exist_ok=True)
    dst = dst_dir / src.name
    onnx.save(model, str(dst))
    card = ModelCard.load_for(src)
    write_card(dst, version, card.heldout_accuracy or 0.0)
    return dst
