"""The TFLite backend on tflite-runtime 2.14, run by tools/dev.py in the numpy<2 environment."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgecascade.shared.backends import BackendOptions, load_backend
from edgecascade.shared.model_card import ModelCard

pytestmark = pytest.mark.tflite_runtime


def test_int8_tflite_on_tflite_runtime(models_dir: Path, digits_split) -> None:
    assert np.__version__.startswith("1."), "this environment exists to prove numpy<2 + tflite-runtime"
    _, held = digits_split
    path = models_dir / "digits_edge_int8.tflite"
    backend = load_backend(path, BackendOptions(extra={"tflite_runtime": "tflite_runtime"}))
    assert backend.runtime == "tflite_runtime"  # type: ignore[attr-defined]
    probs = backend.predict({"input": held.features})["output_0"]
    accuracy = float((probs.argmax(axis=1) == held.labels).mean())
    assert abs(accuracy - ModelCard.load_for(path).heldout_accuracy) <= 0.005
    backend.close()
