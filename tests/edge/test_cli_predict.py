"""`edgecascade agent predict` as a user runs it: a real subprocess, real model, real files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

REPO = Path(__file__).parent.parent.parent
PROFILE = REPO / "firmware-configs" / "raspberry-pi-4.toml"
OFFLINE = {**os.environ, "EDGECASCADE_CLOUD__URL": ""}


def agent(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edgecascade", "agent", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env or OFFLINE,
        timeout=60,
    )


@pytest.fixture
def inputs(tmp_path: Path, digits_split) -> tuple[list[Path], list[int]]:
    _, held = digits_split
    png, npy, js = tmp_path / "digit.png", tmp_path / "digit.npy", tmp_path / "features.json"
    cv2.imwrite(str(png), held.images[0])
    np.save(npy, held.images[1])
    js.write_text(json.dumps(held.features[2].tolist()))
    return [png, npy, js], [int(v) for v in held.labels[:3]]


def test_predict_image_npy_and_json(inputs: tuple[list[Path], list[int]]) -> None:
    files, labels = inputs
    result = agent("predict", "--config", str(PROFILE), "--json", *map(str, files))
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["label"] for r in rows] == [str(v) for v in labels]
    for row in rows:
        assert row["edge_model"] == {"name": "digits-edge", "version": "1.0.0"}
        assert row["source"] == "edge" and 0 < row["confidence"] <= 1 and row["latency_ms"] > 0
    human = agent("predict", "--config", str(PROFILE), str(files[0]))
    assert human.returncode == 0 and "digits-edge 1.0.0" in human.stdout and "ms" in human.stdout


def test_bad_inputs_are_reported_without_traceback(
    tmp_path: Path, inputs: tuple[list[Path], list[int]]
) -> None:
    wrong = tmp_path / "wrong.json"
    wrong.write_text("[1, 2, 3]")
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    result = agent("predict", "--config", str(PROFILE), str(wrong), str(text), str(inputs[0][0]))
    assert result.returncode == 1
    assert "expected a uint8 image or encoded features of shape [64]" in result.stderr
    assert "unsupported input type '.txt'" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout.count("digits-edge") == 1  # the good input is still answered


@pytest.mark.parametrize("damage", ["missing", "truncated", "unsupported"])
def test_bad_model_file_is_a_clear_error(tmp_path: Path, models_dir: Path, damage: str, inputs) -> None:
    model = tmp_path / ("model.tflite" if damage != "unsupported" else "model.caffemodel")
    if damage == "truncated":
        model.write_bytes((models_dir / "digits_edge_int8.tflite").read_bytes()[:1000])
        (tmp_path / "model.tflite.card.json").write_bytes(
            (models_dir / "digits_edge_int8.tflite.card.json").read_bytes()
        )
    elif damage == "unsupported":
        model.write_bytes(b"x" * 10)
    profile = tmp_path / "p.toml"
    profile.write_text(
        f'profile = "t"\ndata_dir = "d"\nmemory_budget_mb = 64\n[model]\npath = "{model.name}"\n'
    )
    result = agent("predict", "--config", str(profile), str(inputs[0][0]))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    expected = {
        "missing": "model.tflite: file not found",
        "truncated": "model.tflite: not a valid TFLite model",
        "unsupported": "supported: .onnx, .tflite",
    }[damage]
    assert expected in result.stderr, result.stderr


def test_bad_profile_names_file_and_key(tmp_path: Path, inputs) -> None:
    profile = tmp_path / "p.toml"
    profile.write_text('profile = "t"\ndata_dir = "d"\nmemory_budget_mb = -5\n[model]\npath = "m.tflite"\n')
    result = agent("predict", "--config", str(profile), str(inputs[0][0]))
    assert result.returncode == 1
    assert f"{profile}: memory_budget_mb" in result.stderr and "greater than 0" in result.stderr


def test_help_on_every_level() -> None:
    for args in ([], ["agent"], ["agent", "predict"], ["models"], ["models", "build-demo"]):
        result = subprocess.run(
            [sys.executable, "-m", "edgecascade", *args, "--help"],
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=60,
        )
        assert result.returncode == 0 and "usage: edgecascade" in result.stdout, args
