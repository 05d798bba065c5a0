"""Package data and `edgecascade init`, from the source checkout (the wheel test repeats the
same commands on an installed wheel): what ships is found through importlib.resources, the
data folder mirrors the repository's folders, and init writes a profile that loads and runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from edgecascade import bundled
from edgecascade.edge.config import load_profile

REPO = Path(__file__).resolve().parent.parent
ENV = {k: v for k, v in os.environ.items() if not k.startswith("EDGECASCADE_")}


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edgecascade", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=ENV,
        timeout=120,
    )


def test_package_data_in_a_checkout_is_the_repository_folders() -> None:
    # The symlinks under edgecascade/data lead to the top-level folders, so there is one copy.
    assert bundled.profiles_dir().resolve() == REPO / "firmware-configs"
    assert bundled.models_dir().resolve() == REPO / "tests" / "fixtures" / "models"
    assert bundled.profile_names() == ["jetson-orin-nano", "raspberry-pi-4", "raspberry-pi-5", "x86-store-pc"]
    assert [p.name for p in bundled.demo_model_files()] == [
        "digits_edge_int8.onnx",
        "digits_edge_int8.onnx.card.json",
        "digits_edge_int8.tflite",
        "digits_edge_int8.tflite.card.json",
    ]
    assert [p.name for p in bundled.sample_images()] == [f"digit_{i}.png" for i in range(10)]


def test_every_package_data_pattern_matches_a_shipped_file() -> None:
    patterns = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    root = REPO / "edgecascade"
    for pattern in patterns["edgecascade"]:
        matches = [p for p in root.glob(pattern) if p.is_file()]
        assert matches, pattern
    # Each bundled profile's model path resolves from where the profile is shipped.
    for name in bundled.profile_names():
        profile = load_profile(bundled.profile_path(name), environ={})
        assert (profile.model.path.parent / f"{profile.model.path.name}.tflite").is_file()


def test_unknown_profile_lists_the_bundled_ones(tmp_path: Path) -> None:
    result = cli("init", "--profile", "raspberry-pi-9", "--dir", str(tmp_path / "d"), cwd=tmp_path)
    assert result.returncode == 1
    assert "no bundled profile 'raspberry-pi-9'" in result.stderr and "raspberry-pi-4" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "d").exists()


def test_init_into_a_file_or_an_unwritable_place_names_the_flag(tmp_path: Path) -> None:
    a_file = tmp_path / "taken"
    a_file.write_text("x")
    for args, expected in [
        (["--dir", str(a_file)], f"error: --dir: {a_file} exists and is not a folder"),
        (["--dir", str(tmp_path / "d"), "--data-dir", str(a_file)], "error: --data-dir: "),
        (["--dir", str(a_file / "below")], f"error: --dir: cannot write {a_file / 'below'}"),
    ]:
        result = cli("init", *args, cwd=tmp_path)
        assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
        assert expected in result.stderr, result.stderr


def test_init_writes_a_ready_device_folder(tmp_path: Path) -> None:
    target = tmp_path / "device"
    result = cli(
        "init",
        "--profile",
        "x86-store-pc",
        "--dir",
        str(target),
        "--device-id",
        "store-7",
        "--cloud-url",
        "",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "next steps:" in result.stdout
    assert f"edgecascade agent predict --config {target / 'x86-store-pc.toml'}" in result.stdout
    profile = load_profile(target / "x86-store-pc.toml", environ={})
    assert profile.device_id == "store-7" and profile.cloud.url is None
    assert profile.data_dir == target / "data" and profile.data_dir.is_dir()
    assert profile.model.path == target / "models" / "digits_edge_int8"
    # Comments and the other keys are kept as shipped.
    text = (target / "x86-store-pc.toml").read_text()
    assert text.startswith("# A store PC") and 'graph_optimization = "all"' in text
    env = (target / "edgecascade.env").read_text()
    assert f"EDGECASCADE_CONFIG={target / 'x86-store-pc.toml'}\n" in env
    assert "EDGECASCADE_DEVICE_ID=store-7\n" in env
    assert (target / "edgecascade-agent.service").read_text() == (
        bundled.systemd_dir() / "edgecascade-agent.service"
    ).read_text()

    # The written profile serves from any folder: the ONNX model is chosen by preference.
    predicted = cli(
        "agent",
        "predict",
        "--json",
        "--config",
        str(target / "x86-store-pc.toml"),
        str(target / "samples" / "digit_7.png"),
        cwd=tmp_path,
    )
    assert predicted.returncode == 0, predicted.stderr
    row = json.loads(predicted.stdout)
    assert row["label"] == "7" and row["source"] == "edge"

    again = cli("init", "--profile", "x86-store-pc", "--dir", str(target), cwd=tmp_path)
    assert again.returncode == 1 and "pass --force to overwrite" in again.stderr
    forced = cli("init", "--profile", "x86-store-pc", "--dir", str(target), "--force", cwd=tmp_path)
    assert forced.returncode == 0, forced.stderr


@pytest.mark.parametrize(
    ("args", "absent", "present"),
    [
        # A LiteRT model on a feature file: no OpenCV, ONNX Runtime, cryptography, paho or HTTP.
        (
            ["agent", "predict", "--config", "{litert}", "{npy}"],
            ["cv2", "onnxruntime", "cryptography", "paho", "uvicorn", "starlette", "requests"],
            ["ai_edge_litert"],
        ),
        # An image needs OpenCV, and only that.
        (
            ["agent", "predict", "--config", "{litert}", "{png}"],
            ["onnxruntime", "cryptography", "paho"],
            ["cv2"],
        ),
        (
            ["agent", "predict", "--config", "{onnx}", "{npy}"],
            ["cv2", "ai_edge_litert", "cryptography"],
            ["onnxruntime"],
        ),
        # The version is a literal in shared/version.py (its package holds only a docstring);
        # not even typing (re, collections and enum with it) is imported for it.
        (["--version"], ["numpy", "pydantic", "argparse", "typing", "edgecascade.shared.errors"], []),
    ],
)
def test_commands_import_only_what_the_profile_uses(
    tmp_path: Path, args: list[str], absent: list[str], present: list[str]
) -> None:
    assert cli("init", "--dir", str(tmp_path), "--cloud-url", "", cwd=tmp_path).returncode == 0
    assert (
        cli(
            "init",
            "--profile",
            "x86-store-pc",
            "--dir",
            str(tmp_path),
            "--cloud-url",
            "",
            "--force",
            cwd=tmp_path,
        ).returncode
        == 0
    )
    npy = tmp_path / "digit.npy"
    subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, numpy, cv2; numpy.save(sys.argv[2], cv2.imread(sys.argv[1], 0))",
            str(tmp_path / "samples" / "digit_3.png"),
            str(npy),
        ],
        check=True,
    )
    names = {
        "litert": str(tmp_path / "raspberry-pi-4.toml"),
        "onnx": str(tmp_path / "x86-store-pc.toml"),
        "npy": str(npy),
        "png": str(tmp_path / "samples" / "digit_3.png"),
    }
    argv = [a.format(**names) for a in args]
    probe = (
        "import json, sys\n"
        "from edgecascade.cli import main\n"
        f"rc = main({argv!r})\n"
        "print(json.dumps({'rc': rc, 'modules': sorted(sys.modules)}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=tmp_path, env=ENV, timeout=120
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.splitlines()[-1])
    assert report["rc"] == 0
    loaded = {m.split(".")[0] for m in report["modules"]} | set(report["modules"])
    assert not (set(absent) & loaded), sorted(set(absent) & loaded)
    assert set(present) <= loaded


def test_the_daemon_is_ready_without_a_web_framework_or_what_its_profile_switches_off(tmp_path: Path) -> None:
    """`agent run` with the LiteRT demo profile (local API on, MQTT and cloud off): what is
    imported by the time it says READY=1. The local API runs on httptools alone; paho,
    cryptography, manifests, OpenCV, ONNX Runtime and HTTP clients wait for a profile that uses them."""
    assert cli("init", "--dir", str(tmp_path), "--cloud-url", "", cwd=tmp_path).returncode == 0
    probe = (
        "import json, os, sys\n"
        "from edgecascade.edge.daemon import sd_notify\n"
        "def ready(self):\n"
        "    print(json.dumps(sorted(sys.modules)), flush=True)\n"
        "    os._exit(0)\n"
        "sd_notify.SystemdNotifier.ready = ready\n"
        "from edgecascade.cli import main\n"
        f"main(['agent', 'run', '--config', {str(tmp_path / 'raspberry-pi-4.toml')!r}])\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**ENV, "EDGECASCADE_API__PORT": "0"},
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    modules = set(json.loads(result.stdout.splitlines()[-1]))
    loaded = {m.split(".")[0] for m in modules} | modules
    absent = {
        "uvicorn",
        "starlette",
        "prometheus_client",
        "paho",
        "cryptography",
        "bsdiff4",
        "requests",
        "cv2",
        "onnxruntime",
        "edgecascade.shared.manifest",
        "edgecascade.shared.table_manifest",
        "edgecascade.shared.detection",  # a classifier's card has no detection section
    }
    assert not (absent & loaded), sorted(absent & loaded)
    assert {"httptools", "ai_edge_litert", "edgecascade.edge.daemon.http_server"} <= loaded
