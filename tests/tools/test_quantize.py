"""`edgecascade models quantize` on real models and real data, through the real CLI."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from edgecascade.cli import main
from edgecascade.shared.backends import load_backend


def test_quantize_digits_mlp_from_npz_and_npy_with_labels(
    tmp_path: Path, models_dir: Path, digits_split, capsys: pytest.CaptureFixture[str]
) -> None:
    train, held = digits_split
    calib, evals = tmp_path / "calib", tmp_path / "eval"
    calib.mkdir()
    evals.mkdir()
    np.savez(calib / "part1.npz", input=train.features[:150])
    np.save(calib / "part2.npy", train.features[150:300])
    np.save(evals / "heldout.npy", held.features)
    np.save(evals / "labels.npy", held.labels)
    out = tmp_path / "digits_int8.onnx"
    rc = main(["models", "quantize", str(models_dir / "digits_edge_fp32.onnx"), "--calibration", str(calib),
               "--eval", str(evals), "--out", str(out)])  # fmt: skip
    text = capsys.readouterr().out
    assert rc == 0, text
    assert "calibrating on 2 batches" in text  # two files, each a batch (the model's batch is dynamic)
    assert "output probabilities:" in text and "argmax agreement" in text
    assert "accuracy on 540 examples: float" in text
    backend = load_backend(out)
    ops = {n.op_type for n in __import__("onnx").load(str(out)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    probs = backend.predict({"input": held.features})["probabilities"]
    assert (probs.argmax(1) == held.labels).mean() >= 0.95
    backend.close()
    assert out.stat().st_size < (models_dir / "digits_edge_fp32.onnx").stat().st_size


def test_quantize_detector_from_images_reports_each_output(
    tmp_path: Path, models_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from edgecascade.tools.build_detector_data import canvas_splits

    train, held = canvas_splits(train_count=40, held_count=20)
    calib, evals = tmp_path / "calib", tmp_path / "eval"
    for folder, data in ((calib, train), (evals, held)):
        folder.mkdir()
        for i, img in enumerate(data.images):
            cv2.imwrite(str(folder / f"{i:03d}.png"), np.rint(img[0] * 255).astype(np.uint8))
    rc = main(["models", "quantize", str(models_dir / "digit_detector_fp32.onnx"), "--calibration", str(calib),
               "--eval", str(evals), "--out", str(tmp_path / "det_int8.onnx")])  # fmt: skip
    text = capsys.readouterr().out
    assert rc == 0, text
    assert "calibrating on 40 batches" in text  # one per image file
    for name in ("scores", "deltas"):
        assert f"output {name}:" in text
    assert "latency (median per call)" in text and "size: float" in text


def test_quantize_refuses_inputs_that_do_not_fit(
    tmp_path: Path, models_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    calib = tmp_path / "calib"
    calib.mkdir()
    np.savez(calib / "bad.npz", pixels=np.zeros((4, 64), np.float32))
    rc = main(
        ["models", "quantize", str(models_dir / "digits_rows_stateful.onnx"), "--calibration", str(calib)]
    )
    text = capsys.readouterr().out
    assert rc == 2
    assert "bad.npz" in text and "['row', 'state']" in text and "missing" in text
    empty = tmp_path / "empty"
    empty.mkdir()
    assert (
        main(["models", "quantize", str(models_dir / "digits_edge_fp32.onnx"), "--calibration", str(empty)])
        == 2
    )
    assert "no .npz, .npy or image files" in capsys.readouterr().out


def test_saved_model_without_tensorflow_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import importlib.util

    if importlib.util.find_spec("tensorflow") is not None:
        pytest.skip("TensorFlow is installed here: the conversion would run")
    saved = tmp_path / "saved_model"
    saved.mkdir()
    rc = main(["models", "quantize", str(saved), "--calibration", str(tmp_path)])
    assert rc == 2
    assert "needs TensorFlow" in capsys.readouterr().out


def test_quantize_a_two_input_stateful_model_splits_rows_for_its_fixed_batch(
    tmp_path: Path, models_dir: Path, digits_split, capsys: pytest.CaptureFixture[str]
) -> None:
    train, _ = digits_split
    calib = tmp_path / "calib"
    calib.mkdir()
    rows = train.features[:30].reshape(30, 8, 8)[:, 7]  # each digit's last row
    states = train.features[:30, :56]  # with its first 7 rows as the state
    np.savez(calib / "steps.npz", row=rows, state=states)
    out = tmp_path / "rows_int8.onnx"
    rc = main(["models", "quantize", str(models_dir / "digits_rows_stateful.onnx"), "--calibration", str(calib),
               "--out", str(out)])  # fmt: skip
    text = capsys.readouterr().out
    assert rc == 0, text
    assert "calibrating on 30 batches" in text  # [30, 8] split into 30 calls of the [1, 8] input
    assert "output probabilities:" in text and "output state_out:" in text
    backend = load_backend(out)
    assert [t.name for t in backend.signature.inputs] == ["row", "state"]
    backend.close()
