"""`edgecascade models tune MODEL --data DIR` on real labelled folders (the UCI digits held-out
split written as PNGs and .npy arrays; the colour digits as RGB PNGs for the NCHW classifier),
then the tuned temperature and threshold served by `agent predict` and the Agent, compared
with the bare interpreter."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import onnxruntime as ort
import pytest

from edgecascade.edge.agent import Agent
from edgecascade.edge.config import load_profile
from edgecascade.edge.local_model import LocalModel
from edgecascade.shared.backends import BackendOptions
from edgecascade.shared.model_card import ModelCard
from edgecascade.tools.build_models import colour_digits
from edgecascade.tools.tune import write_calibration

REPO = Path(__file__).parent.parent.parent
MODELS = REPO / "tests" / "fixtures" / "models"
OFFLINE = {**os.environ, "EDGECASCADE_CLOUD__URL": ""}


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edgecascade", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=OFFLINE,
        timeout=120,
    )


def copy_model(name: str, into: Path) -> Path:
    for suffix in ("", ".card.json"):
        shutil.copy(MODELS / f"{name}{suffix}", into / f"{name}{suffix}")
    return into / name


def profile_for(model: Path, path: Path) -> Path:
    path.write_text(
        f'profile = "t"\ndevice_id = "t-1"\ndata_dir = "{path.parent / "data"}"\nmemory_budget_mb = 200\n[model]\nname = "m"\npath = "{model}"\n'
        '[cascade]\npolicies = [{ kind = "max_prob", threshold = 0.5 }]\nmax_escalation_fraction = 1.0\n'
    )
    return path


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory, digits_split) -> dict[str, Path]:  # type: ignore[no-untyped-def]
    """The 540 held-out digits, 8x8 gray (every fifth as a .npy uint8 image, the rest PNG), and
    the same digits coloured and upscaled to 16x16 RGB PNGs."""
    _, held = digits_split
    root = tmp_path_factory.mktemp("tune-data")
    rgb = colour_digits(held.images, 4)
    for i, (image, colour, label) in enumerate(zip(held.images, rgb, held.labels, strict=True)):
        gray, col = root / "digits" / str(label), root / "rgb" / str(label)
        gray.mkdir(parents=True, exist_ok=True)
        col.mkdir(parents=True, exist_ok=True)
        if i % 5 == 0:
            np.save(gray / f"{i}.npy", image)
        else:
            cv2.imwrite(str(gray / f"{i}.png"), image)
        hwc = np.round(colour.transpose(1, 2, 0) * 255).astype(np.uint8)
        cv2.imwrite(str(col / f"{i}.png"), hwc[..., ::-1])  # OpenCV writes BGR
    return {"digits": root / "digits", "rgb": root / "rgb"}


def tune(model: Path, data: Path, *args: str) -> dict[str, Any]:
    result = cli("models", "tune", str(model), "--data", str(data), "--plot", str(model.parent / "t.png"),
                 "--json", *args)  # fmt: skip
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def bare_tflite(path: Path, rows: np.ndarray) -> np.ndarray:
    """The full-integer model on the bare interpreter: int8 in, int8 out, (de)quantized here
    with the tensors' own scale and zero point."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path), num_threads=1)
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    interpreter.resize_tensor_input(inp["index"], list(rows.shape))
    interpreter.allocate_tensors()
    (in_scale, in_zero), (out_scale, out_zero) = inp["quantization"], out["quantization"]
    assert inp["dtype"] == np.int8 and out["dtype"] == np.int8 and in_scale > 0 and out_scale > 0
    q = np.clip(np.round(rows / in_scale) + in_zero, -128, 127).astype(np.int8)
    interpreter.set_tensor(inp["index"], q)
    interpreter.invoke()
    raw = interpreter.get_tensor(out["index"]).astype(np.float32)
    return (raw - np.float32(out_zero)) * np.float32(out_scale)


def bare_ort(path: Path, feed: dict[str, np.ndarray]) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    result: np.ndarray = session.run(None, feed)[0]
    return result


def calibrated(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """What the card's temperature means, in plain numpy: softmax(log p / T)."""
    return softmax(np.log(np.maximum(probabilities, 1e-7)) / np.float32(temperature))


def check_report(report: dict[str, Any]) -> None:
    v = report["calibration"]["validation"]
    assert v["examples"] + report["calibration"]["held_out"]["examples"] == 540
    assert v["ece_after"] <= v["ece_before"] and v["nll_after"] <= v["nll_before"]
    assert report["temperature"] > 0 and report["temperature"] != 1.0
    assert report["chosen"] is not None


def test_digits_folder_tune_is_served_by_agent_predict(tmp_path: Path, folders: dict[str, Path]) -> None:
    model = copy_model("digits_edge_int8.tflite", tmp_path)
    profile = profile_for(model, tmp_path / "p.toml")
    report = tune(model, folders["digits"], "--max-escalation", "0.10", "--policy", "max_prob",
                  "--write-profile", str(profile))  # fmt: skip
    check_report(report)
    assert abs(report["calibration"]["validation"]["examples"] - 270) <= 5  # half of each digit's ~54
    temperature, threshold = report["temperature"], report["chosen"]["threshold"]
    assert ModelCard.load_for(model).calibration.temperature == temperature  # type: ignore[union-attr]
    assert report["written"] == {"profile": str(profile), "card": str(ModelCard.path_for(model))}
    policy = load_profile(profile, environ={}).cascade.policies[0]
    assert (policy.kind, policy.threshold) == ("max_prob", threshold)

    pngs = sorted(folders["digits"].glob("*/*.png"))[:40]
    result = cli("agent", "predict", "--config", str(profile), "--json", *map(str, pngs))
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    images = np.stack([cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) for p in pngs])
    expected = calibrated(bare_tflite(model, (images.reshape(len(pngs), 64) / 255.0).astype(np.float32)),
                          temperature)  # fmt: skip
    np.testing.assert_allclose([r["confidence"] for r in rows], expected.max(axis=1), rtol=1e-5)
    hard = expected.max(axis=1) < threshold
    assert hard.any() and not hard.all()
    for row, is_hard in zip(rows, hard, strict=True):
        # Offline, a hard case is answered by the edge, degraded, with the tuned threshold as its reason.
        assert row["degraded"] == bool(is_hard)
        assert (f"< {threshold:.3f}" in row["reason"]) == bool(is_hard)


def test_rgb_nchw_folder_tune_is_served_by_the_agent(tmp_path: Path, folders: dict[str, Path]) -> None:
    model = copy_model("digits_rgb_nchw.onnx", tmp_path)
    profile = profile_for(model, tmp_path / "p.toml")
    report = tune(model, folders["rgb"], "--max-escalation", "0.10", "--val-fraction", "0.4", "--seed", "3",
                  "--policy", "entropy", "--write-profile", str(profile))  # fmt: skip
    check_report(report)
    temperature, threshold = report["temperature"], report["chosen"]["threshold"]
    pngs = sorted(folders["rgb"].glob("*/*.png"))[::27]
    agent = Agent.from_profile(load_profile(profile, environ=OFFLINE))
    try:
        from edgecascade.edge.tasks import TaskRequest

        blobs = np.array([p.read_bytes() for p in pngs], dtype=object)
        reply = agent.infer("m", TaskRequest({"image": blobs}))
    finally:
        agent.close()
    images = np.stack([cv2.imread(str(p))[..., ::-1] for p in pngs])  # RGB, as the pipeline reads it
    feed = (images.transpose(0, 3, 1, 2) / 255.0).astype(np.float32)
    expected = calibrated(bare_ort(model, {"image": feed}), temperature)
    np.testing.assert_allclose(reply.outputs["probabilities"], expected, rtol=1e-5, atol=1e-7)
    entropy = -(expected * np.log(np.clip(expected, 1e-12, 1))).sum(axis=1) / np.log(10)
    for record, h in zip(reply.provenance, entropy, strict=True):
        assert record["escalated"] == bool(h > threshold)


def test_a_logits_model_is_calibrated_by_dividing_its_logits(tmp_path: Path) -> None:
    from tests.edge.tasks import onnx_models

    path = onnx_models.nchw_classifier(tmp_path / "pets.onnx")
    (tmp_path / "labels.txt").write_text("cat\ndog\nbird\n")
    done = cli("models", "import", str(path), "--input", "image:scale=1/255", "--logits",
               "--labels", str(tmp_path / "labels.txt"))  # fmt: skip
    assert done.returncode == 0, done.stderr
    write_calibration(path, 2.5, "test")
    x = np.random.default_rng(0).uniform(0, 1, (1, 3, 8, 8)).astype(np.float32)
    model = LocalModel.load(path, BackendOptions())
    try:
        served = model.probabilities(x)
    finally:
        model.close()
    np.testing.assert_allclose(served, softmax(bare_ort(path, {"image": x}) / 2.5), rtol=1e-5)


def test_folder_errors_are_clear(tmp_path: Path, folders: dict[str, Path]) -> None:
    model = copy_model("digits_edge_int8.tflite", tmp_path)
    empty = tmp_path / "empty"
    (empty / "3").mkdir(parents=True)
    unknown = tmp_path / "unknown"
    shutil.copytree(folders["digits"] / "3", unknown / "3")
    (unknown / "cat").mkdir()
    broken = tmp_path / "broken"
    shutil.copytree(folders["digits"] / "7", broken / "7")
    (broken / "7" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    loose = tmp_path / "loose"
    shutil.copytree(folders["digits"] / "1", loose / "1")
    shutil.copy(next((folders["digits"] / "2").glob("*.png")), loose / "stray.png")
    other = tmp_path / "other"
    shutil.copytree(folders["digits"] / "4", other / "4")
    (other / "4" / "notes.txt").write_text("hello")
    cases = {
        empty: [f"data folder {empty} holds no examples", "labels 0, 1, 2"],
        unknown: [f"{unknown}: folder(s) cat are not labels of model 'digits-edge'", "labels are 0, 1, 2"],
        broken: [f"{broken / '7' / 'bad.png'}: ", "not a decodable image"],
        tmp_path / "missing": [f"data folder {tmp_path / 'missing'} does not exist"],
        loose: [f"{loose}: stray.png not inside a label folder"],
        other: [
            f"{other / '4' / 'notes.txt'}: unsupported file kind '.txt'; expected .png, .jpg, .jpeg, .npy"
        ],
    }
    for data, expected in cases.items():
        result = cli("models", "tune", str(model), "--data", str(data), "--plot", str(tmp_path / "t.png"))
        assert result.returncode == 1, result.stdout
        assert "Traceback" not in result.stderr
        for text in expected:
            assert text in result.stderr, result.stderr


def test_a_profile_serving_another_artifact_is_warned_about(tmp_path: Path, folders: dict[str, Path]) -> None:
    model = copy_model("digits_edge_int8.tflite", tmp_path)
    profile = profile_for(MODELS / "digits_edge_int8.onnx", tmp_path / "p.toml")
    result = cli("models", "tune", str(model), "--data", str(folders["digits"]), "--max-escalation", "0.1",
                 "--write-profile", str(profile), "--plot", str(tmp_path / "t.png"))  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert f"serves {MODELS / 'digits_edge_int8.onnx'}, not {model}" in result.stderr
    assert ModelCard.load_for(MODELS / "digits_edge_int8.onnx").calibration is None
