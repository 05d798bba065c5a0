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


def test_hostile_input_files_are_refused_in_bounded_memory(tmp_path: Path) -> None:
    """NaN, infinity, deep nesting, a FIFO, /dev/zero, an oversized file: each refused with
    its name, none reaches the model, nothing hangs or reads without end."""
    nan = tmp_path / "nan.npy"
    np.save(nan, np.full(64, np.nan, np.float32))
    (tmp_path / "inf.json").write_text("[1e400" + ", 0" * 63 + "]")
    (tmp_path / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    fifo = tmp_path / "pipe.npy"
    os.mkfifo(fifo)
    big = tmp_path / "big.npy"
    np.save(big, np.zeros((1, 64), np.float32))
    profile = tmp_path / "small.toml"
    profile.write_text(
        PROFILE.read_text().replace("[runtime]", "[api]\nmax_body_mb = 0.0001\n\n[runtime]", 1)
    )
    profile_dir = PROFILE.parent
    profile.write_text(profile.read_text().replace('"../', f'"{profile_dir}/../'))
    files = [nan, tmp_path / "inf.json", tmp_path / "deep.json", fifo, Path("/dev/zero")]
    result = agent("predict", "--config", str(PROFILE), *map(str, files))
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == len(files) and result.stdout == "", result.stderr
    assert f"{nan}: input 'input' has 64 non-finite value(s)" in errors[0]
    assert "has 1 non-finite value(s)" in errors[1]
    assert "JSON nested too deeply" in errors[2]
    assert f"{fifo}: not a regular file" in errors[3] and "/dev/zero: not a regular file" in errors[4]
    over = agent("predict", "--config", str(profile), str(big))
    assert (
        over.returncode == 1 and "over the limit of 104 bytes for an input (api.max_body_mb)" in over.stderr
    ), over.stderr


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"x = " + b"[" * 5000 + b"]" * 5000, "nested too deeply"),
        (b'profile = "\xff\xfe"', "not UTF-8 text (byte 11 is 0xff)"),
        (b"#" * (2 << 20), "over 1024 KiB"),
        (None, "expected a profile file, got a device, pipe or socket"),
    ],
    ids=["deep", "not-utf8", "huge", "fifo"],
)
def test_hostile_profile_files_name_the_file(tmp_path: Path, content: bytes | None, expected: str) -> None:
    profile = tmp_path / "p.toml"
    if content is None:
        os.mkfifo(profile)
    else:
        profile.write_bytes(content)
    result = agent("predict", "--config", str(profile), "x.npy")
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert f"error: {profile}: " in result.stderr and expected in result.stderr, result.stderr


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
