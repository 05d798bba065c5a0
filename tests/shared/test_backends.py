"""Both backends on the real demo models and the real held-out digits."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from edgecascade.shared.backends import load_backend
from edgecascade.shared.errors import ModelLoadError, SignatureMismatchError, UnsupportedModelError
from edgecascade.shared.model_card import ModelCard

EDGE_ARTIFACTS = ["digits_edge_int8.tflite", "digits_edge_int8.onnx", "digits_edge_fp32.onnx"]


def _probs(path: Path, features: np.ndarray) -> np.ndarray:
    backend = load_backend(path)
    try:
        card = ModelCard.load_for(path)
        return backend.predict({"input": features})[card.probabilities_output]
    finally:
        backend.close()


@pytest.mark.parametrize("artifact", [*EDGE_ARTIFACTS, "digits_cloud.onnx"])
def test_heldout_accuracy_matches_model_card(models_dir: Path, digits_split, artifact: str) -> None:
    _, held = digits_split
    path = models_dir / artifact
    accuracy = float((_probs(path, held.features).argmax(axis=1) == held.labels).mean())
    card = ModelCard.load_for(path)
    assert card.heldout_size == len(held.labels)
    assert abs(accuracy - card.heldout_accuracy) <= 0.005, (accuracy, card.heldout_accuracy)


@pytest.mark.parametrize("artifact", ["digits_edge_int8.tflite", "digits_edge_int8.onnx"])
def test_int8_model_agrees_with_float_source(models_dir: Path, digits_split, artifact: str) -> None:
    _, held = digits_split
    int8 = _probs(models_dir / artifact, held.features).argmax(axis=1)
    source = ModelCard.load_for(models_dir / artifact).float_source
    assert source == "digits_edge_fp32.onnx"
    fp32 = _probs(models_dir / source, held.features).argmax(axis=1)
    assert (int8 == fp32).mean() >= 0.97


def test_quantized_tflite_takes_and_returns_floats(models_dir: Path, digits_split) -> None:
    _, held = digits_split
    backend = load_backend(models_dir / "digits_edge_int8.tflite")
    sig = backend.signature
    assert sig.inputs[0].dtype == "float32" and sig.inputs[0].quantization is not None
    assert sig.inputs[0].shape == (-1, 64) and sig.outputs[0].shape == (-1, 10)
    for batch in (1, 7, 1, 32):  # resizing up and back down
        out = backend.predict({"input": held.features[:batch]})["output_0"]
        assert out.dtype == np.float32 and out.shape == (batch, 10)
        np.testing.assert_allclose(out.sum(axis=1), 1.0, atol=0.05)
    backend.close()


@pytest.mark.parametrize("artifact", EDGE_ARTIFACTS)
def test_wrong_shape_names_expected_signature(models_dir: Path, artifact: str) -> None:
    backend = load_backend(models_dir / artifact)
    with pytest.raises(SignatureMismatchError, match=r"shape \[1, 63\].*input: float32\[N, 64\]"):
        backend.predict({"input": np.zeros((1, 63), np.float32)})
    with pytest.raises(SignatureMismatchError, match="expected inputs"):
        backend.predict({"pixels": np.zeros((1, 64), np.float32)})
    with pytest.raises(SignatureMismatchError, match="dtype <U1"):
        backend.predict({"input": np.full((1, 64), "x")})
    backend.close()


def test_missing_truncated_and_corrupt_models_name_the_file(models_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"nope\.tflite: file not found"):
        load_backend(tmp_path / "nope.tflite")
    for name in ("digits_edge_int8.tflite", "digits_edge_int8.onnx"):
        data = (models_dir / name).read_bytes()
        truncated = tmp_path / f"truncated_{name}"
        truncated.write_bytes(data[: len(data) // 3])
        with pytest.raises(ModelLoadError, match=f"truncated_{name}"):
            load_backend(truncated)
        garbage = tmp_path / f"garbage_{name}"
        garbage.write_bytes(b"\x00not a model at all" * 50)
        with pytest.raises(ModelLoadError, match=f"garbage_{name}"):
            load_backend(garbage)
    empty = tmp_path / "empty.onnx"
    empty.touch()
    with pytest.raises(ModelLoadError, match="empty"):
        load_backend(empty)


def test_unsupported_extension_lists_supported(models_dir: Path, tmp_path: Path) -> None:
    weird = tmp_path / "model.pt"
    shutil.copy(models_dir / "digits_edge_int8.onnx", weird)
    with pytest.raises(UnsupportedModelError, match=r"supported: \.onnx, \.tflite"):
        load_backend(weird)


def test_backend_override_by_config(models_dir: Path, tmp_path: Path) -> None:
    renamed = tmp_path / "model.bin"
    shutil.copy(models_dir / "digits_edge_int8.onnx", renamed)
    backend = load_backend(renamed, backend="onnx")
    assert backend.name == "onnx"
    backend.close()


def test_backend_names_are_the_registrys_everywhere() -> None:
    """Config, manifests and the V2 platform names take their backend names from the registry."""
    from pydantic import ValidationError

    from edgecascade.edge.config.runtime import RuntimeSection
    from edgecascade.shared.backends.registry import BACKENDS, EXTENSIONS
    from edgecascade.shared.v2.protocol import PLATFORMS

    assert set(PLATFORMS) == set(BACKENDS) == set(EXTENSIONS.values())
    assert RuntimeSection().backend_preference == list(BACKENDS)
    with pytest.raises(ValidationError, match="unknown backend 'tensorrt'; known backends: onnx, tflite"):
        RuntimeSection(backend_preference=["tensorrt"])


@pytest.mark.parametrize("artifact", EDGE_ARTIFACTS)
def test_prepared_inputs_with_one_left_out_are_checked(models_dir: Path, artifact: str) -> None:
    """`prepared=True` skips only the check the input pipeline already did; inputs that are not
    all there are checked (and refused) as before."""
    backend = load_backend(models_dir / artifact)
    row = np.zeros((1, 64), np.float32)
    assert next(iter(backend.predict({"input": row}, prepared=True).values())).shape == (1, 10)
    with pytest.raises(SignatureMismatchError, match="expected inputs"):
        backend.predict({}, prepared=True)
    backend.close()
