"""The wheel as a device installs it: built from the tree, installed with ONLY the `edge` extra
(exact versions from constraints.txt) into a fresh virtual environment, then `init`,
`agent predict` on a real image and `agent run` answering a real V2 request over HTTP, all
from a folder far from the source (one that even has its own `shared/` and `edge/`)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import requests

from edgecascade.shared.features import decode_image, encode_image
from edgecascade.shared.model_card import ModelCard
from edgecascade.tools.mqtt_broker import free_port

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
# What is not source: environments, build outputs, run data.
SKIP = {".git", "build", "dist", "var", "__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache"}
ENV = {k: v for k, v in os.environ.items() if not k.startswith(("EDGECASCADE_", "VIRTUAL_ENV", "PYTHON"))}


def _ignore(folder: str, names: list[str]) -> set[str]:
    return {n for n in names if n in SKIP or n.startswith(".venv") or n.endswith(".egg-info")}


def run(cmd: list[str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(cmd, cwd=cwd, env=ENV, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{cmd}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the wheel and its `edge` extra; returns its bin folder."""
    root = tmp_path_factory.mktemp("wheel")
    src = root / "src"
    # A clean copy, symlinks kept: a stale build/ in the checkout must not leak into the wheel.
    shutil.copytree(REPO, src, symlinks=True, ignore=_ignore)
    run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(root / "dist"), str(src)],
        root,
    )
    (wheel,) = (root / "dist").glob("edgecascade-*.whl")
    venv = root / "venv"
    run([getattr(sys, "_base_executable", sys.executable), "-m", "venv", str(venv)], root)
    run(
        [
            str(venv / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "--quiet",
            "-c",
            str(REPO / "constraints.txt"),
            f"{wheel}[edge]",
        ],
        root,
        timeout=900,
    )
    return venv / "bin"


def test_wheel_holds_only_the_edgecascade_package(installed: Path) -> None:
    (wheel,) = (installed.parent.parent / "dist").glob("edgecascade-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names} == {"edgecascade", "edgecascade-0.1.0.dist-info"}
    assert not [n for n in names if "/bench/" in n]
    data = sorted(n.removeprefix("edgecascade/data/") for n in names if n.startswith("edgecascade/data/"))
    assert "tests/fixtures/models/digits_edge_int8.tflite" in data
    assert "firmware-configs/raspberry-pi-4.toml" in data
    assert not [n for n in data if "digits_cloud" in n or "fp32" in n]  # only the small demo model


def test_installed_site_packages(installed: Path) -> None:
    site = next((installed.parent / "lib").glob("python3*/site-packages"))
    (dist_info,) = site.glob("edgecascade-*.dist-info")
    record = (dist_info / "RECORD").read_text().splitlines()
    tops = {line.split(",")[0].split("/")[0] for line in record}
    assert tops == {"edgecascade", dist_info.name, ".."}  # ".." is the console script in bin/
    for name in ("edge", "cloud", "shared", "tools"):
        assert not (site / name).exists(), name
    package = site / "edgecascade"
    assert (package / "edge" / "agent.py").is_file() and not (package / "edge").is_symlink()
    assert not (package / "tools" / "bench").exists()
    assert (package / "data" / "firmware-configs" / "systemd" / "edgecascade-agent.service").is_file()
    assert (package / "data" / "firmware-configs" / "mosquitto" / "mosquitto.conf").is_file()
    # Only the edge extra: no cloud database driver, no scikit-learn, no TensorFlow.
    freeze = run([str(installed / "python"), "-m", "pip", "freeze", "--all"], installed).stdout.lower()
    got = dict(line.split("==") for line in freeze.splitlines() if "==" in line)
    assert "edgecascade @ file://" in freeze and "ai-edge-litert" in got and "paho-mqtt" in got
    for absent in ("psycopg", "scikit-learn", "tensorflow-cpu", "amqtt", "pytest"):
        assert absent not in got, absent
    # Exactly the versions of the constraints file (pip and setuptools come with the venv).
    pins = dict(
        line.split("==") for line in (REPO / "constraints.txt").read_text().splitlines() if "==" in line
    )
    for name, version in got.items():
        if name not in ("pip", "setuptools", "wheel"):
            assert pins[name.replace("_", "-").replace(".", "-")] == version, (name, version)


def test_init_predict_and_run_from_another_folder(installed: Path, tmp_path: Path) -> None:
    # A folder with its own shared/ and edge/ packages, which once shadowed ours.
    for name in ("shared", "edge"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text("raise ImportError('the wrong package')\n")
    edgecascade = str(installed / "edgecascade")
    version = run([edgecascade, "--version"], tmp_path).stdout.strip()
    assert version == "edgecascade 0.1.0"

    out = run([edgecascade, "init", "--dir", "device", "--cloud-url", ""], tmp_path).stdout
    device = tmp_path / "device"
    profile = device / "raspberry-pi-4.toml"
    assert f"edgecascade agent predict --config {profile}" in out
    assert (device / "models" / "digits_edge_int8.tflite").is_file()

    image = device / "samples" / "digit_3.png"
    predicted = run(
        [edgecascade, "agent", "predict", "--json", "--config", str(profile), str(image)], tmp_path
    )
    row = json.loads(predicted.stdout)
    assert row["label"] == "3" and row["source"] == "edge"
    assert row["edge_model"] == {"name": "digits-edge", "version": "1.0.0"}

    port = free_port()
    log = tmp_path / "agent.log"
    with open(log, "wb") as sink:
        proc = subprocess.Popen(
            [edgecascade, "agent", "run", "--config", str(profile)],
            cwd=tmp_path,
            env={**ENV, "EDGECASCADE_API__PORT": str(port)},
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            try:
                if requests.get(url + "/v2/health/ready", timeout=0.5).status_code == 200:
                    break
            except requests.ConnectionError:
                time.sleep(0.1)
        card = ModelCard.load_for(device / "models" / "digits_edge_int8.tflite")
        features = encode_image(decode_image(image.read_bytes()), card.features.encoding)  # type: ignore[arg-type]
        body = {
            "id": "wheel-1",
            "inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP32", "data": features.tolist()}],
        }
        resp = requests.post(url + "/v2/models/digits-edge/infer", json=body, timeout=10)
        assert resp.status_code == 200, resp.text
        reply = resp.json()
        assert reply["id"] == "wheel-1" and reply["model_name"] == "digits-edge"
        outputs = {o["name"]: o["data"] for o in reply["outputs"]}
        assert outputs["label"] == ["3"]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, log.read_text()[-3000:]
        assert "stopped cleanly" in log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
