"""The card's audio pipeline: WAV bytes (written by the stdlib `wave` writer, float WAV by hand)
-> mono samples -> the model's window, as floats in [-1, 1] or int16 values."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from pydantic import ValidationError

from edgecascade.shared.backends.base import TensorSpec
from edgecascade.shared.errors import ConfigError, InputError
from edgecascade.shared.features import AudioEncoding, ImageEncoding, decode_wav, encode_audio
from edgecascade.shared.features.audio import resample
from edgecascade.shared.input_pipeline import describe, prepare_input
from edgecascade.shared.model_card import TensorCard
from edgecascade.tools.build_audio_model import build, wav_bytes
from edgecascade.tools.model_import import ImportAnswers, import_model

RNG = np.random.default_rng(3)


def _tone(n: int = 800, rate: int = 16000) -> np.ndarray:
    return (0.5 * np.sin(2 * np.pi * 440 * np.arange(n) / rate)).astype(np.float32)


@pytest.mark.parametrize(("kind", "atol"), [("pcm16", 1 / 32768), ("pcm8", 1 / 128), ("float32", 0.0)])
def test_wav_formats_decode_to_the_samples_written(kind: str, atol: float) -> None:
    x = _tone()
    got, rate = decode_wav(wav_bytes(x, 16000, kind), max_seconds=10)
    assert rate == 16000 and got.dtype == np.float32 and got.shape == x.shape
    np.testing.assert_allclose(got, x, atol=atol + 1e-7)


def test_pcm16_values_survive_exactly_and_stereo_is_averaged() -> None:
    pcm = RNG.integers(-32768, 32767, size=(500, 2)).astype(np.int16)
    data = wav_bytes(pcm.astype(np.float32) / 32768, 8000, "pcm16", channels=2)
    got, rate = decode_wav(data, max_seconds=10)
    assert rate == 8000
    np.testing.assert_array_equal(got, (pcm.astype(np.float32) / 32768).mean(axis=1, dtype=np.float32))
    mono = wav_bytes(pcm[:, 0].astype(np.float32) / 32768, 8000, "pcm16")
    enc = AudioEncoding(kind="audio", sample_rate=8000, samples=500, values="int16")
    np.testing.assert_array_equal(encode_audio(*decode_wav(mono, 10), enc), pcm[:, 0])


def test_clips_are_padded_or_cut_to_the_window() -> None:
    x = _tone(300)
    enc = AudioEncoding(kind="audio", sample_rate=16000, samples=400, layout="channel_samples")
    padded = encode_audio(x, 16000, enc)
    assert padded.shape == (1, 400)
    np.testing.assert_array_equal(padded[0, :300], x)
    assert not padded[0, 300:].any()
    cut = encode_audio(_tone(1000), 16000, enc.model_copy(update={"samples": 200}))
    np.testing.assert_array_equal(cut[0], _tone(1000)[:200])
    exact = enc.model_copy(update={"fit": "exact"})
    with pytest.raises(InputError, match="300 samples; the model takes exactly 400"):
        encode_audio(x, 16000, exact)


def _with_rate(wav: bytes, rate: int) -> bytes:
    return wav[:24] + struct.pack("<I", rate) + wav[28:]  # the fmt chunk's sample rate field


@pytest.mark.parametrize("rate", [44100, 48000, 22050, 8000])
def test_a_clip_at_another_rate_is_resampled_to_the_models(rate: int) -> None:
    seconds, f = 0.5, 440.0
    x = (0.5 * np.sin(2 * np.pi * f * np.arange(int(rate * seconds)) / rate)).astype(np.float32)
    enc = AudioEncoding(kind="audio", sample_rate=16000, samples=8000, fit="exact")
    got = encode_audio(*decode_wav(wav_bytes(x, rate, "float32"), 10), enc)
    want = 0.5 * np.sin(2 * np.pi * f * np.arange(8000) / 16000)
    # Exactly the window the model takes, the tone where it was; only the clip's first and last
    # few samples differ (the mirrored ends).
    assert got.shape == (8000,)
    np.testing.assert_allclose(got[50:-50], want[50:-50], atol=2e-3)
    assert np.abs(got - want).max() < 0.2


def test_a_tone_above_the_models_nyquist_is_removed_not_folded_back() -> None:
    # 12 kHz at 44.1 kHz, to a 16 kHz model (Nyquist 8 kHz): dropping samples instead of
    # filtering would fold it back as a strong 4 kHz tone.
    x = (0.5 * np.sin(2 * np.pi * 12000 * np.arange(44100) / 44100)).astype(np.float32)
    enc = AudioEncoding(kind="audio", sample_rate=16000, samples=16000)
    got = encode_audio(x, 44100, enc)
    assert np.sqrt(np.mean(np.square(got))) < 0.01  # was 0.354


def test_resampling_refuses_absurd_rates_before_allocating() -> None:
    with pytest.raises(InputError, match="cannot resample 999999937 Hz"):
        resample(np.zeros(10, np.float32), 999_999_937, 16000)  # a prime: would pad by 1e9 samples


def test_refusals_name_what_was_expected() -> None:
    enc = AudioEncoding(kind="audio", sample_rate=16000, samples=400)
    with pytest.raises(InputError, match=r"WAV declares 4294967295 Hz; expected 1 to 1,000,000 Hz"):
        decode_wav(_with_rate(wav_bytes(_tone(), 16000), 2**32 - 1), 10)
    with pytest.raises(InputError, match=r"WAV declares 0 channels"):
        decode_wav(wav_bytes(_tone(), 16000)[:22] + b"\0\0" + wav_bytes(_tone(), 16000)[24:], 10)
    with pytest.raises(InputError, match="not a WAV file"):
        decode_wav(b"\x89PNG\r\n\x1a\n" + bytes(40), 10)
    with pytest.raises(InputError, match=r"over the limit of 0.01 s \(pipeline.max_seconds\)"):
        decode_wav(wav_bytes(_tone(800), 16000), max_seconds=0.01)
    truncated = wav_bytes(_tone(), 16000)[:36]  # the fmt chunk, then nothing
    with pytest.raises(InputError, match="no data chunk"):
        decode_wav(truncated, 10)
    spec = TensorSpec("audio", (-1, 400), "float32")
    card = TensorCard(name="audio", dtype="float32", shape=[-1, 400], pipeline=enc)
    with pytest.raises(InputError, match=r"input 'audio': clip 1: WAV declares 4294967295 Hz"):
        bad = _with_rate(wav_bytes(_tone(), 16000), 2**32 - 1)
        prepare_input(np.array([wav_bytes(_tone(), 16000), bad], dtype=object), card, spec)
    assert describe(spec, enc) == "audio: float32 [-1, 400] or WAV audio (BYTES, 16000 Hz)"


def test_prepare_input_batches_clips_and_passes_raw_samples() -> None:
    enc = AudioEncoding(kind="audio", sample_rate=16000, samples=400)
    spec = TensorSpec("audio", (-1, 400), "float32")
    card = TensorCard(name="audio", dtype="float32", shape=[-1, 400], pipeline=enc)
    clips = np.array(
        [wav_bytes(_tone(400), 16000, "float32"), wav_bytes(_tone(100), 16000, "float32")], dtype=object
    )
    batch = prepare_input(clips, card, spec)
    assert batch.shape == (2, 400) and batch.dtype == np.float32
    np.testing.assert_array_equal(batch[0], _tone(400))
    raw = RNG.random((3, 400), dtype=np.float32)
    np.testing.assert_array_equal(prepare_input(raw, card, spec), raw)  # a tensor passes as given


def test_card_pipelines_round_trip_by_kind() -> None:
    audio = TensorCard.model_validate({"name": "a", "dtype": "int16", "shape": [1, 16000],
                                       "pipeline": {"kind": "audio", "sample_rate": 16000, "samples": 16000,
                                                    "values": "int16"}})  # fmt: skip
    assert isinstance(audio.pipeline, AudioEncoding)
    # Cards written before audio carry image pipelines, some without `kind`.
    image = TensorCard.model_validate({"name": "i", "dtype": "float32", "shape": [1, 8, 8, 3],
                                       "pipeline": {"width": 8, "height": 8, "color": "rgb", "layout": "nhwc"}})  # fmt: skip
    assert isinstance(image.pipeline, ImageEncoding)
    assert TensorCard.model_validate_json(audio.model_dump_json()) == audio
    with pytest.raises(ValidationError):
        AudioEncoding(kind="audio", sample_rate=16000, samples=0)


def test_models_import_guesses_the_window_and_asks_for_the_rate(tmp_path) -> None:
    model = build(tmp_path / "tones.onnx")
    with pytest.raises(
        ConfigError, match=r"input 'audio': the sample rate is not in the model; pass audio:rate=HZ"
    ):
        import_model(model, ImportAnswers(inputs=["audio"]))
    result = import_model(model, ImportAnswers(inputs=["audio:rate=16000"], labels=["low", "high", "noise"]))
    pipe = result.card.input("audio").pipeline
    assert pipe == AudioEncoding(
        kind="audio", sample_rate=16000, samples=16000, values="unit", layout="samples"
    )
    assert any("float samples in [-1, 1]" in n for n in result.notes)
    named = import_model(
        model, ImportAnswers(inputs=["audio=audio:rate=16000"])
    )  # an input named like the kind
    assert named.card.input("audio").pipeline == pipe
    int16 = import_model(
        build(tmp_path / "tones16.onnx", values="int16"), ImportAnswers(inputs=["audio:rate=16000"])
    )
    assert int16.card.input("audio").pipeline.values == "int16"  # type: ignore[union-attr]
    with pytest.raises(ConfigError, match=r"samples: Input should be greater than 0"):
        import_model(model, ImportAnswers(inputs=["audio:rate=16000,samples=0"]))
