"""The model repository layout and model.toml validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgecascade.cloud.repository import scan_repository, seed_demo_repository, version_key
from edgecascade.shared.errors import ConfigError
from edgecascade.shared.model_card import ModelCard


def test_demo_repository_layout(tmp_path: Path, models_dir: Path) -> None:
    repo = seed_demo_repository(tmp_path / "repo", models_dir, extra_versions=("1.10.0", "1.9.0"))
    (entry,) = scan_repository(repo)
    assert entry.name == "digits-cloud"
    assert [v.version for v in entry.versions] == ["1.0.0", "1.9.0", "1.10.0"]
    assert entry.default_version == "1.0.0"  # marked in model.toml, not the newest
    card = entry.versions[0].card
    assert isinstance(card, ModelCard) and card.file == "model.onnx" and card.version == "1.0.0"
    assert (repo / "digits-cloud" / "1.0.0" / "model.onnx").read_bytes() == (
        models_dir / "digits_cloud.onnx"
    ).read_bytes()


def test_version_key_orders_numbers_numerically() -> None:
    assert sorted(["2", "10", "1.10", "1.9"], key=version_key) == ["1.9", "1.10", "2", "10"]


@pytest.mark.parametrize(
    ("toml", "key"),
    [
        ("max_batch_size = 0", "max_batch_size"),
        ("max_queue_delay_ms = 'soon'", "max_queue_delay_ms"),
        ("instancs = 2", "instancs"),
        ('default_version = "3.0"', "default_version"),
    ],
)
def test_bad_model_toml_names_file_and_key(tmp_path: Path, models_dir: Path, toml: str, key: str) -> None:
    repo = seed_demo_repository(tmp_path / "repo", models_dir)
    (repo / "digits-cloud" / "model.toml").write_text(toml + "\n")
    with pytest.raises(ConfigError) as info:
        scan_repository(repo)
    assert info.value.file == str(repo / "digits-cloud" / "model.toml")
    assert info.value.key == key


def test_version_folder_without_a_model_is_refused(tmp_path: Path, models_dir: Path) -> None:
    repo = seed_demo_repository(tmp_path / "repo", models_dir)
    (repo / "digits-cloud" / "2.0.0").mkdir()
    with pytest.raises(ConfigError, match="exactly one model file"):
        scan_repository(repo)
    with pytest.raises(ConfigError, match="not found"):
        scan_repository(tmp_path / "missing")


# ---- any ONNX model, Triton-style: <repo>/<model>/<version>/model.onnx, nothing else needed ----


def _any_model_repo(root: Path, models_dir: Path) -> Path:
    import shutil

    repo = root / "any-models"
    for name, source in (
        ("detector", "digit_detector_cloud.onnx"),
        ("rows", "digits_rows_stateful.onnx"),
        ("detector-edge", "digit_detector_int8.onnx"),
    ):
        (repo / name / "1").mkdir(parents=True)
        shutil.copyfile(models_dir / source, repo / name / "1" / "model.onnx")  # no card, no model.toml
    (repo / "reshape" / "1").mkdir(parents=True)
    shutil.copyfile(models_dir / "reshape_needs_resize.tflite", repo / "reshape" / "1" / "model.tflite")
    (repo / "detector-edge" / "model.toml").write_text(
        'execution_providers = ["TensorrtExecutionProvider", "CUDAExecutionProvider"]\n'
        "[provider_options.CUDAExecutionProvider]\n"
        'device_id = "0"\n'
    )
    return repo


def test_model_toml_lists_execution_providers(tmp_path: Path, models_dir: Path) -> None:
    from edgecascade.cloud.models import backend_options
    from edgecascade.cloud.repository import ModelSettings, write_settings

    repo = _any_model_repo(tmp_path, models_dir)
    entries = {e.name: e for e in scan_repository(repo)}
    settings = entries["detector-edge"].settings
    assert settings.execution_providers == ["TensorrtExecutionProvider", "CUDAExecutionProvider"]
    options = backend_options(settings)
    assert [(p.name, dict(p.options)) for p in options.onnx_providers] == [
        ("TensorrtExecutionProvider", {}),
        ("CUDAExecutionProvider", {"device_id": "0"}),
    ]
    assert entries["detector"].versions[0].card is None
    # written back as TOML that reads the same
    write_settings(repo / "detector", settings)
    assert scan_repository(repo)[0].settings == settings
    (repo / "rows" / "model.toml").write_text('execution_providers = ["cuda"]\n')
    with pytest.raises(ConfigError) as info:
        scan_repository(repo)
    assert info.value.key == "execution_providers.0"
    assert ModelSettings().execution_providers == []


def test_cloud_serves_any_onnx_model_with_its_own_outputs(tmp_path: Path, models_dir: Path) -> None:
    import numpy as np
    import requests

    from edgecascade.shared.backends import load_backend
    from edgecascade.shared.v2 import decode_infer_response, encode_infer_request
    from tests.support.cloud_server import cloud_server

    repo = _any_model_repo(tmp_path, models_dir)
    sample = dict(np.load(models_dir / "digit_detector_cloud.onnx.sample.npz"))
    with cloud_server(repo) as server:
        meta = requests.get(f"{server.url}/v2/models/detector", timeout=5).json()
        assert meta["platform"] == "onnx_onnxv1"
        assert meta["inputs"] == [{"name": "image", "datatype": "FP32", "shape": [1, 1, 64, 64]}]
        assert meta["outputs"] == [
            {"name": "boxes", "datatype": "FP32", "shape": [1, -1, 4]},
            {"name": "classes", "datatype": "FP32", "shape": [1, -1]},
            {"name": "scores", "datatype": "FP32", "shape": [1, -1]},
            {"name": "count", "datatype": "FP32", "shape": [1]},
        ]
        assert meta["parameters"]["accelerator"] == "CPUExecutionProvider"
        edge_meta = requests.get(f"{server.url}/v2/models/detector-edge", timeout=5).json()
        assert edge_meta["parameters"]["accelerator"] == "CPUExecutionProvider"  # TensorRT/CUDA absent

        direct = load_backend(models_dir / "digit_detector_cloud.onnx").predict(sample)
        for binary in (False, True):
            body, headers = encode_infer_request(sample, binary=binary, binary_outputs=binary)
            resp = requests.post(
                f"{server.url}/v2/models/detector/infer", data=body, headers=headers, timeout=10
            )
            assert resp.status_code == 200, resp.text
            answer = decode_infer_response(resp.content, resp.headers)
            assert list(answer.outputs) == ["boxes", "classes", "scores", "count"]
            for name, value in direct.items():
                np.testing.assert_allclose(answer.outputs[name], value, rtol=1e-6)
            assert int(answer.outputs["count"][0]) == answer.outputs["boxes"].shape[1] >= 1

        # a state input/output pair, carried by the caller
        state = np.zeros((1, 56), np.float32)
        row = dict(np.load(models_dir / "digits_rows_stateful.onnx.sample.npz"))["row"]
        body, headers = encode_infer_request({"row": row, "state": state}, outputs=["state_out"])
        resp = requests.post(f"{server.url}/v2/models/rows/infer", data=body, headers=headers, timeout=10)
        assert resp.status_code == 200, resp.text
        answer = decode_infer_response(resp.content, resp.headers)
        assert list(answer.outputs) == ["state_out"]
        np.testing.assert_array_equal(answer.outputs["state_out"][0, -8:], row[0])

        # a size the model cannot run (after it was allocated for another) is a 400, not a 500
        for length, status in ((6, 200), (3, 400), (4, 200)):
            body, headers = encode_infer_request({"x": np.arange(length, dtype=np.float32)[None]})
            resp = requests.post(
                f"{server.url}/v2/models/reshape/infer", data=body, headers=headers, timeout=10
            )
            assert resp.status_code == status, resp.text
        assert (
            "input sizes {'x': [1, 3]} do not fit the model"
            in requests.post(
                f"{server.url}/v2/models/reshape/infer",
                data=encode_infer_request({"x": np.zeros((1, 3), np.float32)})[0],
                headers=encode_infer_request({"x": np.zeros((1, 3), np.float32)})[1],
                timeout=10,
            ).json()["error"]
        )

        # a wrong shape is a 400 naming the input and the expected signature
        body, headers = encode_infer_request({"image": np.zeros((2, 1, 64, 64), np.float32)})
        resp = requests.post(f"{server.url}/v2/models/detector/infer", data=body, headers=headers, timeout=10)
        assert resp.status_code == 400
        assert "image" in resp.json()["error"] and "[1, 1, 64, 64]" in resp.json()["error"]
