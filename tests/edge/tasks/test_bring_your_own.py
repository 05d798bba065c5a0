"""A user's own models, end to end: `models import` writes each card, `agent run --model ...`
(no profile) serves all of them at once over the local V2 API, and every output equals the
bare interpreter's for the same inputs. Bad input is a 400 naming the input, never a 500."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import requests

from edgecascade.shared.backends import BackendOptions, load_backend
from edgecascade.shared.v2 import decode_infer_response, encode_infer_request
from edgecascade.tools.mqtt_broker import free_port
from tests.edge.tasks import onnx_models

REPO = Path(__file__).resolve().parents[3]
FIXTURES = REPO / "tests" / "fixtures" / "models"


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edgecascade", *args], capture_output=True, text=True, cwd=REPO, timeout=120
    )


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("byom")
    (root / "labels.txt").write_text("cat\ndog\nbird\n")
    paths = {
        "detector": onnx_models.detector(root / "detector.onnx"),
        "segmenter": onnx_models.segmenter(root / "segmenter.onnx"),
        "multi": onnx_models.multi_input(root / "multi.onnx"),
        "rnn": onnx_models.stateful(root / "rnn.onnx"),
        "energy": onnx_models.dynamic(root / "energy.onnx"),
        "pets": onnx_models.nchw_classifier(root / "pets.onnx"),
        "digits": root / "digits.tflite",
        "pairs": onnx_models.pairs(root / "pairs.onnx"),
    }
    shutil.copyfile(FIXTURES / "digits_edge_int8.tflite", paths["digits"])
    flags = {
        "detector": ["--task", "detection"],
        "segmenter": ["--task", "tensor", "--input", "image"],
        "multi": [],
        "rnn": ["--task", "tensor", "--state", "h_in=h_out"],
        "energy": ["--escalate", "energy>100"],
        "pets": ["--input", "image:scale=1/255", "--logits", "--labels", str(root / "labels.txt")],
        "digits": [],
        "pairs": [],
    }
    for name, path in paths.items():
        done = cli("models", "import", str(path), *flags[name])
        assert done.returncode == 0, done.stderr
        assert f"wrote {path}.card.json" in done.stdout
    return paths


@pytest.fixture(scope="module")
def agent_url(models: dict[str, Path]) -> Iterator[str]:
    port = free_port()
    args = [a for p in models.values() for a in ("--model", str(p))]
    log = models["digits"].parent / "agent.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "edgecascade", "agent", "run", *args, "--port", str(port)],
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ},
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                if requests.get(f"{url}/v2/health/ready", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        assert "Traceback" not in log.read_text(), log.read_text()


def infer(url: str, model: str, inputs: dict[str, np.ndarray], **params: object) -> requests.Response:
    body, headers = encode_infer_request(inputs, request_id="t", parameters=dict(params) or None)
    return requests.post(f"{url}/v2/models/{model}/infer", data=body, headers=headers, timeout=10)


def outputs(resp: requests.Response) -> dict[str, np.ndarray]:
    assert resp.status_code == 200, resp.text
    return decode_infer_response(resp.content, resp.headers).outputs


def bare(path: Path, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, feeds), strict=True))


RNG = np.random.default_rng(1)


def test_metadata_is_the_models_own(agent_url: str) -> None:
    meta = requests.get(f"{agent_url}/v2/models/segmenter", timeout=5).json()
    assert [(i["name"], i["datatype"], i["shape"]) for i in meta["inputs"]] == [
        ("image", "FP32", [1, 6, 5, 3])
    ]
    assert [(o["name"], o["datatype"], o["shape"]) for o in meta["outputs"]] == [
        ("mask", "FP32", [1, 6, 5, 2])
    ]
    multi = requests.get(f"{agent_url}/v2/models/multi", timeout=5).json()
    assert [(i["name"], i["datatype"], i["shape"]) for i in multi["inputs"]] == [
        ("x", "FP32", [-1, 4]),
        ("k", "INT64", []),
    ]
    assert multi["parameters"]["task"] == "tensor"
    det = requests.get(f"{agent_url}/v2/models/detector", timeout=5).json()
    assert [o["name"] for o in det["outputs"]][:2] == ["boxes", "scores"]
    assert requests.get(f"{agent_url}/v2/models/nope", timeout=5).status_code == 404


@pytest.mark.parametrize(
    ("model", "feeds"),
    [
        ("segmenter", {"image": RNG.random((1, 6, 5, 3), dtype=np.float32)}),
        ("multi", {"x": RNG.random((3, 4), dtype=np.float32), "k": np.array(7, dtype=np.int64)}),
        ("energy", {"audio": RNG.random((2, 11), dtype=np.float32)}),
        ("energy", {"audio": RNG.random((1, 400), dtype=np.float32)}),
        ("pairs", {"values": RNG.random((2, 4), dtype=np.float32)}),
        ("detector", {"image": RNG.random((1, 8, 8, 3), dtype=np.float32)}),
    ],
)
def test_outputs_equal_the_bare_interpreter(
    agent_url: str, models: dict[str, Path], model: str, feeds: dict[str, np.ndarray]
) -> None:
    got = outputs(infer(agent_url, model, feeds))
    want = bare(models[model], feeds)
    for name, value in want.items():
        assert np.array_equal(got[name], value), name


def test_detector_answers_with_detections_and_provenance(agent_url: str, models: dict[str, Path]) -> None:
    feeds = {"image": RNG.random((1, 8, 8, 3), dtype=np.float32)}
    resp = infer(agent_url, "detector", feeds)
    body = decode_infer_response(resp.content, resp.headers)
    want = bare(models["detector"], feeds)
    reported = want["scores"][0] >= 0.5
    assert int(body.outputs["detection_count"][0]) == int(reported.sum())
    assert np.array_equal(
        np.sort(body.outputs["detection_scores"][0])[::-1], np.sort(want["scores"][0][reported])[::-1]
    )
    record = body.parameters["provenance"][0]
    assert record["edge_model"] == "detector:1.0.0" and len(record["detections"]) == int(reported.sum())
    # No cloud configured: a frame with an uncertain detection is answered locally, degraded.
    uncertain = ((want["scores"][0] >= 0.3) & (want["scores"][0] < 0.6)).any()
    assert record["escalated"] is bool(uncertain) and record["degraded"] is bool(uncertain)


def test_stateful_model_carries_state_per_session(agent_url: str, models: dict[str, Path]) -> None:
    x1, x2 = RNG.random((1, 4), dtype=np.float32), RNG.random((1, 4), dtype=np.float32)
    first = outputs(infer(agent_url, "rnn", {"x": x1}, session_id="s1"))
    second = outputs(infer(agent_url, "rnn", {"x": x2}, session_id="s1"))
    other = outputs(infer(agent_url, "rnn", {"x": x2}, session_id="s2"))
    zeros = np.zeros((1, 4), dtype=np.float32)
    step1 = bare(models["rnn"], {"x": x1, "h_in": zeros})
    assert np.array_equal(first["y"], step1["y"])
    assert np.array_equal(second["y"], bare(models["rnn"], {"x": x2, "h_in": step1["h_out"]})["y"])
    assert np.array_equal(other["y"], bare(models["rnn"], {"x": x2, "h_in": zeros})["y"])
    resp = infer(agent_url, "rnn", {"x": x1})
    assert resp.status_code == 400 and "session_id" in resp.json()["error"]


def test_classifiers_of_any_shape(agent_url: str, models: dict[str, Path]) -> None:
    import cv2

    image = RNG.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    ok, png = cv2.imencode(".png", image)
    resp = infer(agent_url, "pets", {"image": np.array([png.tobytes()], dtype=object)})
    got = outputs(resp)
    tensor = (cv2.cvtColor(image, cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0).transpose(2, 0, 1)[None]
    logits = bare(models["pets"], {"image": tensor})["logits"][0]
    assert got["label"][0] == ["cat", "dog", "bird"][int(logits.argmax())].encode()
    expected = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    assert np.allclose(got["probabilities"][0], expected, atol=1e-6)
    rows = RNG.random((4, 64), dtype=np.float32)
    backend = load_backend(FIXTURES / "digits_edge_int8.tflite", BackendOptions())
    want = backend.predict({"input": rows})["output_0"]
    backend.close()
    got = outputs(infer(agent_url, "digits", {"input": rows}))
    assert np.array_equal(got["probabilities"], want)
    assert np.array_equal(got["class_index"], want.argmax(axis=1))


@pytest.mark.parametrize(
    ("model", "feeds", "words"),
    [
        ("segmenter", {"image": np.zeros((1, 6, 6, 3), np.float32)}, ["'image'", "[1, 6, 5, 3]"]),
        ("segmenter", {"image": np.zeros((1, 6, 5, 3), np.bool_)}, ["'image'", "BOOL", "FP32"]),
        ("segmenter", {"image": np.array([b"not an image"], dtype=object)}, ["image"]),
        ("multi", {"x": np.zeros((2, 4), np.float32)}, ["missing input 'k'", "k: int64 []"]),
        ("multi", {"x": np.zeros((2, 4), np.float32), "k": np.array(1.5)}, ["'k'", "INT64"]),
        ("multi", {"x": np.zeros((2, 4), np.float32), "k": np.array(1), "z": np.array(1)}, ["'z'"]),
        ("detector", {"image": np.zeros((1, 8, 8), np.float32)}, ["'image'", "[1, 8, 8, 3]"]),
        ("pets", {"image": np.zeros((1, 8, 8, 3), np.float32)}, ["'image'", "[1, 3, 8, 8]"]),
        ("energy", {"audio": np.zeros((2, 3, 4), np.float32)}, ["'audio'", "[-1, -1]"]),
        ("digits", {"input": np.zeros((1, 63), np.float32)}, ["'input'", "64"]),
        ("pairs", {"values": np.zeros((1, 3), np.float32)}, ["do not fit the model", "values"]),
    ],
)
def test_bad_input_is_a_400_naming_the_input(
    agent_url: str, model: str, feeds: dict[str, np.ndarray], words: list[str]
) -> None:
    resp = infer(agent_url, model, feeds)
    assert resp.status_code == 400, resp.text
    for word in words:
        assert word in resp.json()["error"]


def test_predict_cli_takes_npz_and_prints_every_output(models: dict[str, Path], tmp_path: Path) -> None:
    feeds = {"x": RNG.random((2, 4), dtype=np.float32), "k": np.array(3, dtype=np.int64)}
    np.savez(tmp_path / "in.npz", **feeds)
    done = cli("agent", "predict", "--model", str(models["multi"]), str(tmp_path / "in.npz"), "--json")
    assert done.returncode == 0, done.stderr
    row = json.loads(done.stdout)
    want = bare(models["multi"], feeds)
    assert np.array_equal(np.array(row["outputs"]["y"], dtype=np.float32), want["y"])
    assert np.array_equal(np.array(row["outputs"]["total"], dtype=np.float32), want["total"])
    bad = cli("agent", "predict", "--model", str(models["multi"]), str(tmp_path / "missing.npz"))
    assert bad.returncode == 1 and "cannot read input" in bad.stderr and "Traceback" not in bad.stderr


def test_a_card_that_does_not_fit_is_refused(models: dict[str, Path], tmp_path: Path) -> None:
    (tmp_path / "two.txt").write_text("a\nb\n")
    done = cli("models", "import", str(models["pets"]), "--labels", str(tmp_path / "two.txt"))
    assert done.returncode == 2 and "labels: expected 3 labels" in done.stderr
    copy = tmp_path / "seg.onnx"
    shutil.copyfile(models["segmenter"], copy)
    card = json.loads(Path(f"{models['segmenter']}.card.json").read_text())
    card["outputs"][0]["shape"] = [1, 6, 5, 7]
    Path(f"{copy}.card.json").write_text(json.dumps(card))
    run = cli("agent", "predict", "--model", str(copy), str(tmp_path / "x.npy"))
    assert run.returncode != 0 and "Traceback" not in run.stderr
    assert f"{copy}.card.json" in run.stderr and "outputs[0].shape: expected [1, 6, 5, 2]" in run.stderr


def test_predict_cli_takes_an_image_for_an_image_input(models: dict[str, Path], tmp_path: Path) -> None:
    import cv2

    image = RNG.integers(0, 256, (6, 5, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "frame.png"), image)
    done = cli("agent", "predict", "--model", str(models["segmenter"]), str(tmp_path / "frame.png"), "--json")
    assert done.returncode == 0, done.stderr
    row = json.loads(done.stdout)
    rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB).astype(np.float32)
    tensor = ((rgb * np.float32(1 / 255) - np.float32(0.0)) / np.float32(1.0))[None]
    want = bare(models["segmenter"], {"image": tensor})["mask"]
    assert np.array_equal(np.array(row["outputs"]["mask"], dtype=np.float32), want)
    assert row["provenance"][0]["source"] == "edge"
    human = cli("agent", "predict", "--model", str(models["segmenter"]), str(tmp_path / "frame.png"))
    assert human.returncode == 0 and "mask float32 [1, 6, 5, 2]" in human.stdout


def test_an_unknown_output_is_a_400_listing_the_models_outputs(agent_url: str) -> None:
    body, headers = encode_infer_request(
        {"x": np.zeros((1, 4), np.float32), "k": np.array(1)}, outputs=["nope"]
    )
    resp = requests.post(f"{agent_url}/v2/models/multi/infer", data=body, headers=headers, timeout=10)
    assert resp.status_code == 400 and "no output 'nope'; outputs: ['y', 'total']" in resp.json()["error"]


def test_a_model_that_fails_its_check_process_never_serves(models: dict[str, Path], tmp_path: Path) -> None:
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"\x08\x07garbage, not a protobuf" * 8)  # its card is the segmenter's
    shutil.copyfile(f"{models['segmenter']}.card.json", f"{broken}.card.json")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "edgecascade",
            "agent",
            "run",
            "--model",
            str(broken),
            "--port",
            str(free_port()),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert f"cannot load model {broken}: not a valid ONNX model" in done.stderr
