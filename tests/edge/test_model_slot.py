"""The model slot's checked fast path: inputs prepared for one model skip the backend's second
check only while that model serves."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgecascade.edge.local_model import LocalModel
from edgecascade.edge.model_slot import ModelSlot
from edgecascade.shared.backends import BackendOptions
from edgecascade.shared.errors import SignatureMismatchError


def test_inputs_prepared_for_a_swapped_out_model_are_checked_by_the_new_one(models_dir: Path) -> None:
    path = models_dir / "digits_edge_int8.tflite"
    old, new = LocalModel.load(path, BackendOptions()), LocalModel.load(path, BackendOptions())
    slot = ModelSlot(old)
    model, outputs = slot.run({"input": np.zeros((1, 64), np.float32)}, old)
    assert model is old and next(iter(outputs.values())).shape == (1, 10)
    slot.swap(new)
    # Said to be prepared for the old model, run on the new one: its backend checks them.
    with pytest.raises(SignatureMismatchError, match=r"'input' has shape \[1, 63\]"):
        slot.run({"input": np.zeros((1, 63), np.float32)}, old)
    slot.close()
