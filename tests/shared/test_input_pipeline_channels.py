"""Per-channel mean/std in the card's image pipeline: checked against a numpy reference written
out by hand, in NHWC and NCHW, through `models import --input` and the card check."""

from __future__ import annotations

import cv2
import numpy as np
import onnxruntime as ort
import pytest
from pydantic import ValidationError

from edgecascade.shared.backends import BackendOptions, load_backend
from edgecascade.shared.card_check import card_problems
from edgecascade.shared.errors import ConfigError
from edgecascade.shared.features import ImageEncoding, decode_image, encode_image
from edgecascade.shared.input_pipeline import prepare_input
from edgecascade.shared.model_card import ModelCard
from edgecascade.tools.model_import import ImportAnswers, import_model
from tests.edge.tasks import onnx_models

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def _picture(h: int = 12, w: int = 10) -> np.ndarray:
    """A BGR picture whose three channels differ everywhere (a swapped channel shows)."""
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack([(xx * 25) % 256, (yy * 20) % 256, (xx * yy * 7) % 256], axis=-1).astype(np.uint8)


def _reference(bgr: np.ndarray, scale: float, mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
    """(pixel * scale - mean[c]) / std[c] for every pixel and RGB channel c, one value at a time."""
    h, w, _ = bgr.shape
    out = np.empty((h, w, 3), dtype=np.float32)
    for y in range(h):
        for x in range(w):
            r, g, b = int(bgr[y, x, 2]), int(bgr[y, x, 1]), int(bgr[y, x, 0])
            for c, v in enumerate((r, g, b)):
                out[y, x, c] = (np.float32(v) * np.float32(scale) - np.float32(mean[c])) / np.float32(std[c])
    return out


@pytest.mark.parametrize("layout", ["nhwc", "nchw"])
def test_per_channel_mean_and_std_equal_the_hand_computed_reference(layout: str) -> None:
    bgr = _picture()
    enc = ImageEncoding(width=10, height=12, color="rgb", layout=layout, mean=MEAN, std=STD)  # type: ignore[arg-type]
    ref = _reference(bgr, 1 / 255, MEAN, STD)
    got = encode_image(bgr, enc)
    want = ref if layout == "nhwc" else ref.transpose(2, 0, 1)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    # Caffe-style 0..255 means and BGR order: the list follows the model's colour order.
    caffe = ImageEncoding(
        width=10, height=12, color="bgr", layout=layout, scale=1.0, mean=(103.9, 116.8, 123.7)
    )  # type: ignore[arg-type]
    bgr_ref = bgr.astype(np.float32) - np.array([103.9, 116.8, 123.7], dtype=np.float32)
    got = encode_image(bgr, caffe)
    np.testing.assert_allclose(got, bgr_ref if layout == "nhwc" else bgr_ref.transpose(2, 0, 1), atol=1e-4)


def test_scalar_mean_and_std_are_unchanged() -> None:
    bgr = _picture()
    got = encode_image(
        bgr, ImageEncoding(width=10, height=12, color="rgb", layout="nhwc", mean=0.5, std=0.25)
    )
    np.testing.assert_allclose(got, _reference(bgr, 1 / 255, (0.5,) * 3, (0.25,) * 3), rtol=1e-6, atol=1e-6)


def test_a_list_that_does_not_fit_the_channels_is_refused_naming_the_field(tmp_path) -> None:
    with pytest.raises(ValidationError, match="mean has 3 values; color 'gray' has 1 channel"):
        ImageEncoding(width=4, height=4, color="gray", mean=MEAN)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="std must be > 0"):
        ImageEncoding(width=4, height=4, color="rgb", std=(0.2, 0.0, 0.2))  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="std has 2 values"):
        ImageEncoding(width=4, height=4, color="rgb", std=(0.2, 0.3))  # type: ignore[arg-type]
    model = onnx_models.nchw_classifier(tmp_path / "pets.onnx")
    with pytest.raises(ConfigError, match=r"input 'image': .*mean has 2 values; color 'rgb' has 3 channels"):
        import_model(model, ImportAnswers(inputs=["image:mean=0.5,0.4"], logits=True))


def test_models_import_writes_per_channel_lists_and_serves_them(tmp_path) -> None:
    model = onnx_models.nchw_classifier(tmp_path / "pets.onnx")
    result = import_model(
        model, ImportAnswers(inputs=["image:mean=0.485,0.456,0.406,std=0.229,0.224,0.225"], logits=True)
    )
    card = result.card
    pipe = card.input("image").pipeline
    assert isinstance(pipe, ImageEncoding)
    assert (pipe.layout, pipe.color, pipe.mean, pipe.std) == ("nchw", "rgb", MEAN, STD)
    path = card.save_beside(model)
    assert ModelCard.model_validate_json(path.read_text()) == card  # lists survive the JSON round trip

    bgr = _picture(16, 16)
    ok, png = cv2.imencode(".png", bgr)
    assert ok
    backend = load_backend(model, BackendOptions(warmup_runs=0))
    try:
        x = prepare_input(png.tobytes(), card.input("image"), backend.signature.inputs[0])
        small = cv2.resize(decode_image(png.tobytes()), (8, 8), interpolation=cv2.INTER_AREA)
        want = _reference(small, 1 / 255, MEAN, STD).transpose(2, 0, 1)[None]
        np.testing.assert_allclose(x, want, rtol=1e-6, atol=1e-6)
        bare = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
        np.testing.assert_array_equal(
            backend.predict({"image": x})["logits"], bare.run(None, {"image": want})[0]
        )
    finally:
        backend.close()


def test_the_card_check_names_a_pipeline_that_does_not_make_the_models_tensor(tmp_path) -> None:
    model = onnx_models.nchw_classifier(tmp_path / "pets.onnx")
    card = import_model(model, ImportAnswers(inputs=["image"], logits=True)).card
    t = card.inputs[0]
    gray = t.model_copy(update={"pipeline": ImageEncoding(width=8, height=8, color="gray", layout="nchw")})
    broken = card.model_copy(update={"inputs": [gray]})
    backend = load_backend(model, BackendOptions(warmup_runs=0))
    try:
        problems = card_problems(broken, backend.signature)
    finally:
        backend.close()
    assert problems == [
        "inputs[0].pipeline: makes [N, 1, 8, 8] (image 8x8, color gray (1 channels), layout nchw), "
        "the model expects [1, 3, 8, 8]"
    ]
