"""An audio classifier end to end: trained here on synthesized clips (tools/build_audio_model.py),
its card written by `models import --input audio:rate=16000`, WAV files answered by `agent
predict` and by the local V2 API (BYTES), each output equal to the bare interpreter's on the
samples the pipeline prepared. One model takes [-1, 1] floats, the other int16 PCM values."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import requests

from edgecascade.shared.v2 import decode_infer_response, encode_infer_request
from edgecascade.tools.build_audio_model import LABELS, RATE, build, clip, wav_bytes
from edgecascade.tools.mqtt_broker import free_port

REPO = Path(__file__).resolve().parents[3]


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edgecascade", *args], capture_output=True, text=True, cwd=REPO, timeout=120
    )


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("audio")
    paths = {"tones": build(root / "tones.onnx"), "tones16": build(root / "tones16.onnx", values="int16")}
    for path in paths.values():
        done = cli(
            "models", "import", str(path), "--labels", str(root / f"{path.stem}.labels.txt"),
            "--input", "audio:rate=16000",
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert "input  audio:" in done.stdout and "audio 16000 Hz, 16000 samples" in done.stdout
    return paths


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One WAV file per class, in the three formats and at two lengths (padded and cut)."""
    root = tmp_path_factory.mktemp("clips")
    rng = np.random.default_rng(11)
    out = {}
    for label, kind, seconds in zip(LABELS, ("pcm16", "pcm8", "float32"), (1.0, 0.6, 1.7), strict=True):
        path = root / f"{label}.wav"
        path.write_bytes(wav_bytes(clip(label, rng, seconds), RATE, kind))
        out[label] = path
    return out


def _prepared(path: Path, values: str) -> np.ndarray:
    """What the pipeline must give the model, computed here from the file by other means."""
    import wave

    data = path.read_bytes()
    if data[20:22] == b"\x03\x00":  # float WAV: samples after the 44-byte header
        x = np.frombuffer(data[44:], dtype="<f4")
    else:
        with wave.open(str(path)) as w:
            raw = w.readframes(w.getnframes())
            x = (
                np.frombuffer(raw, "<i2") / np.float32(32768)
                if w.getsampwidth() == 2
                else (np.frombuffer(raw, np.uint8).astype(np.float32) - 128) / np.float32(128)
            )
    row = np.zeros(16000, np.float32)
    row[: min(16000, len(x))] = x[:16000]
    if values == "int16":
        return np.clip(np.rint(row * 32768), -32768, 32767).astype(np.int16)[None]
    return row[None]


def _bare(model: Path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    return session.run(["probabilities"], {"audio": x})[0]


@pytest.mark.parametrize("name", ["tones", "tones16"])
def test_agent_predict_answers_a_wav_file_as_the_bare_interpreter(
    models: dict[str, Path], clips: dict[str, Path], name: str
) -> None:
    for label, path in clips.items():
        done = cli("agent", "predict", "--model", str(models[name]), str(path), "--json")
        assert done.returncode == 0, done.stderr
        row = json.loads(done.stdout)
        want = _bare(models[name], _prepared(path, "int16" if name == "tones16" else "unit"))
        assert np.array_equal(np.array(row["outputs"]["probabilities"], dtype=np.float32), want)
        assert row["outputs"]["label"] == [label]


def _tone(f0: float, harmonics: tuple[int, ...], rate: int, seconds: float = 1.0) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return sum(0.4 / h * np.sin(2 * np.pi * f0 * h * t) for h in harmonics).astype(np.float32)


def test_agent_predict_resamples_a_clip_at_another_rate(models: dict[str, Path], tmp_path: Path) -> None:
    # The same sounds recorded at CD and DVD rates answer as at the model's 16 kHz.
    for label, f0, harmonics in (("low", 220.0, (1, 2, 3)), ("high", 3000.0, (1,))):
        rows = {}
        for rate in (16000, 44100, 48000):
            path = tmp_path / f"{label}-{rate}.wav"
            path.write_bytes(wav_bytes(_tone(f0, harmonics, rate), rate))
            done = cli("agent", "predict", "--model", str(models["tones"]), str(path), "--json")
            assert done.returncode == 0, done.stderr
            rows[rate] = json.loads(done.stdout)["outputs"]
        for rate in (44100, 48000):
            assert rows[rate]["label"] == [label]
            np.testing.assert_allclose(rows[rate]["probabilities"], rows[16000]["probabilities"], atol=0.02)


@pytest.fixture(scope="module")
def agent_url(models: dict[str, Path]) -> Iterator[str]:
    port = free_port()
    args = [a for p in models.values() for a in ("--model", str(p))]
    log = models["tones"].parent / "agent.log"
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


def _infer(url: str, model: str, inputs: dict[str, np.ndarray]) -> requests.Response:
    body, headers = encode_infer_request(inputs, request_id="t")
    return requests.post(f"{url}/v2/models/{model}/infer", data=body, headers=headers, timeout=10)


def test_the_local_api_takes_wav_bytes(
    agent_url: str, models: dict[str, Path], clips: dict[str, Path]
) -> None:
    meta = requests.get(f"{agent_url}/v2/models/tones16", timeout=5).json()
    assert [(i["name"], i["datatype"]) for i in meta["inputs"]] == [("audio", "INT16")]
    files = list(clips.values())
    batch = np.array([p.read_bytes() for p in files], dtype=object)
    for name, values in (("tones", "unit"), ("tones16", "int16")):
        resp = _infer(agent_url, name, {"audio": batch})
        assert resp.status_code == 200, resp.text
        got = decode_infer_response(resp.content, resp.headers).outputs
        # A classifier answers example by example (the cascade's unit), so the bare runs do too.
        want = np.concatenate([_bare(models[name], _prepared(p, values)) for p in files])
        assert np.array_equal(got["probabilities"], want)
        assert [v.decode() for v in got["label"]] == list(clips)
    silent = wav_bytes(np.zeros(800, np.float32), 8000)
    no_channels = silent[:22] + b"\0\0" + silent[24:]
    bad = _infer(agent_url, "tones", {"audio": np.array([no_channels], dtype=object)})
    assert bad.status_code == 400
    assert "WAV declares 0 channels" in bad.json()["error"]
    # Another rate is resampled, over the API too.
    assert _infer(agent_url, "tones", {"audio": np.array([silent], dtype=object)}).status_code == 200
