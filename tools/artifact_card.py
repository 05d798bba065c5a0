"""The model card written beside every artifact the build tools make: its hash, size and
signature read from the file through the serving backend, and the figures it was evaluated to."""

from __future__ import annotations

import hashlib
import platform
from importlib import metadata
from pathlib import Path

from edgecascade.shared.backends import BackendOptions, load_backend
from edgecascade.shared.features import FeatureSpec
from edgecascade.shared.model_card import ModelCard, TensorCard


def tool_versions(*packages: str) -> dict[str, str]:
    """Python's version and each installed package's (those not installed are left out)."""
    found = {"python": platform.python_version()}
    for pkg in packages:
        try:
            found[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            continue
    return found


def save_artifact_card(
    path: Path,
    *,
    name: str,
    quantization: str,
    accuracy: float,
    size: int,
    probabilities: str | None,
    labels: list[str],
    features: FeatureSpec,
    dataset: str,
    tools: dict[str, str],
    float_source: str | None = None,
    version: str = "1.0.0",
) -> ModelCard:
    """Write the card beside `path` (held-out `accuracy` over `size` cases) and return it.
    `probabilities` None: the only output, or the one named `probabilities`."""
    backend = load_backend(path, BackendOptions(warmup_runs=0))
    sig = backend.signature
    backend.close()
    card = ModelCard(
        name=name,
        version=version,
        backend=path.suffix.lstrip("."),
        file=path.name,
        sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
        size_bytes=path.stat().st_size,
        dataset=dataset,
        heldout_accuracy=round(accuracy, 6),
        heldout_size=size,
        quantization=quantization,
        inputs=[TensorCard(name=t.name, dtype=t.dtype, shape=list(t.shape)) for t in sig.inputs],
        outputs=[TensorCard(name=t.name, dtype=t.dtype, shape=list(t.shape)) for t in sig.outputs],
        probabilities_output=probabilities or probabilities_output([t.name for t in sig.outputs]),
        labels=labels,
        features=features,
        tool_versions=tools,
        float_source=float_source,
    )
    card.save_beside(path)
    return card


def probabilities_output(names: list[str]) -> str:
    """The probabilities output: the only output, or the one named `probabilities`."""
    return names[0] if len(names) == 1 else "probabilities"
