"""`models import` for detectors with raw per-anchor outputs (scores [N, A, C], boxes [N, A, 4+]):
which output is which, and the anchors. The anchors are guessed only when exactly one of
MediaPipe's standard SSD configurations (shared/detection/anchors.py) makes A anchors for the
model's input size; otherwise the error says what could not be guessed and how to write it."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from edgecascade.shared.backends.base import TensorSpec
from edgecascade.shared.detection.anchors import STANDARD_SSD_CONFIGS, SsdAnchors, matching_ssd_configs
from edgecascade.shared.errors import ConfigError
from edgecascade.shared.model_card import AnchorDecoding, DetectionCard
from edgecascade.tools.import_options import options, why

#: MediaPipe's detector graphs: non-maximum suppression at IoU 0.3, scores from 0.5.
_MEDIAPIPE_NMS_IOU = 0.3
_MEDIAPIPE_MIN_SCORE = 0.5

_HOW = (
    "pass --anchors ssd:strides=S1,S2,...,per_layer=K (MediaPipe's SSD anchor generator) or "
    "--anchors grid:size=PX,stride=PX[,offset=PX] (square anchors), with box_coding=offsets|center_size, "
    "score_activation=none|sigmoid, background=INDEX|none, nms_iou=F, nms=hard|weighted if needed; or write detection.anchors "
    "in the card"
)


def raw_outputs(outs: list[TensorSpec]) -> tuple[TensorSpec, TensorSpec] | None:
    """(boxes, scores) when the outputs are exactly two [N, A, k] tensors of one A and no
    post-processed [N, D] ones: the boxes are the one 4 wide (or the one at least 4 wide)."""
    ranks = sorted(len(t.shape) for t in outs)
    if ranks != [3, 3] or outs[0].shape[1] != outs[1].shape[1] or outs[0].shape[1] <= 0:
        return None
    a, b = outs
    for boxes, scores in ((a, b), (b, a)):
        if boxes.shape[2] == 4 and scores.shape[2] != 4:
            return boxes, scores
    wide = [t for t in outs if t.shape[2] >= 4]
    if len(wide) == 1:
        boxes = wide[0]
        return boxes, b if boxes is a else a
    return None


def anchor_detection(
    given: dict[str, str],
    outs: list[TensorSpec],
    image_size: tuple[int, int] | None,
    anchors_text: str | None,
    notes: list[str],
) -> DetectionCard:
    """The detection section of a raw-output detector; ConfigError saying what to pass."""
    by_name = {t.name: t for t in outs}
    pair = raw_outputs(outs)
    if "boxes" not in given or "scores" not in given:
        if pair is None:
            raise ConfigError(
                "cannot tell the boxes from the scores among "
                + "; ".join(t.describe() for t in outs)
                + "; pass --detection format=anchors,boxes=NAME,scores=NAME",
                key="--detection",
            )
        given.setdefault("boxes", pair[0].name)
        given.setdefault("scores", pair[1].name)
        notes.append(
            f"detection: raw anchor outputs, boxes {given['boxes']!r}, scores {given['scores']!r} "
            "(pass --detection boxes=NAME,scores=NAME if not)"
        )
    boxes, scores = by_name.get(given["boxes"]), by_name.get(given["scores"])
    if boxes is None or scores is None or len(boxes.shape) != 3 or len(scores.shape) != 3:
        raise ConfigError(
            f"format anchors needs boxes [N, A, 4+] and scores [N, A, classes] outputs; got boxes "
            f"{given['boxes']!r}, scores {given['scores']!r} of {sorted(by_name)}",
            key="--detection",
        )
    count, classes, width = scores.shape[1], scores.shape[2], boxes.shape[2]
    if anchors_text:
        spec = _given_anchors(anchors_text, image_size)
    else:
        spec = _guessed_anchors(image_size, count, classes, width, given["boxes"], notes)
    min_score = given.get("min_score")
    if min_score is None and spec.kind == "ssd" and not anchors_text:
        min_score = str(_MEDIAPIPE_MIN_SCORE)
        notes.append(f"detection: min_score {min_score} (MediaPipe's; pass --detection min_score=F)")
    try:
        return DetectionCard(
            format="anchors",
            boxes_output=given["boxes"],
            scores_output=given["scores"],
            min_score=float(min_score) if min_score is not None else 0.0,
            anchors=spec,
        )
    except (ValueError, ValidationError) as exc:
        raise ConfigError(str(exc), key="--detection") from None


def _guessed_anchors(
    image_size: tuple[int, int] | None, count: int, classes: int, width: int, boxes: str, notes: list[str]
) -> AnchorDecoding:
    if image_size is None:
        raise ConfigError(
            f"cannot guess the anchors of {boxes!r} ({count} anchors): the model has no image input of a "
            f"fixed size (pass --input image:size=WxH); or {_HOW}",
            key="--anchors",
        )
    h, w = image_size
    found = matching_ssd_configs(image_size, count)
    tried = "; ".join(
        f"strides {','.join(map(str, s))} x{k} -> {SsdAnchors(image_size, s, k).count()}"
        for s, k in STANDARD_SSD_CONFIGS
    )
    if len(found) != 1:
        what = (
            "none of the standard SSD anchor configurations makes that many"
            if not found
            else "several standard SSD anchor configurations make that many: "
            + " and ".join(
                f"ssd:strides={','.join(map(str, a.strides))},per_layer={a.per_layer}" for a in found
            )
        )
        raise ConfigError(
            f"cannot guess the anchors of {boxes!r}: {count} anchors for a {w}x{h} input; {what} ({tried}); {_HOW}",
            key="--anchors",
        )
    (ssd,) = found
    notes.append(
        f"detection: anchors guessed: MediaPipe SSD strides {list(ssd.strides)}, {ssd.per_layer} per cell "
        f"per layer, for {w}x{h} (the only standard configuration making {count}); pass --anchors if not"
    )
    notes.append(
        "detection: boxes taken as MediaPipe's centre/size in input pixels"
        + (f" (the {width - 4} values after them, keypoints, ignored)" if width > 4 else "")
        + f", scores as logits (sigmoid), no background column, weighted NMS at IoU {_MEDIAPIPE_NMS_IOU} "
        "(pass --anchors ssd:...,box_coding=offsets,score_activation=none,background=0,nms=hard if not)"
    )
    del classes  # MediaPipe's detectors have no background column, whatever their class count
    return AnchorDecoding(
        kind="ssd",
        image_size=image_size,
        strides=list(ssd.strides),
        per_layer=ssd.per_layer,
        box_coding="center_size",
        score_activation="sigmoid",
        background_class=None,
        nms_iou=_MEDIAPIPE_NMS_IOU,
        nms="weighted",
    )


def _given_anchors(text: str, image_size: tuple[int, int] | None) -> AnchorDecoding:
    """`ssd:strides=8,16,16,16,per_layer=2[,...]` or `grid:size=16,stride=4[,...]`."""
    kind, _, rest = text.partition(":")
    opts: dict[str, Any] = dict(options(rest, "--anchors", key="--anchors"))
    if kind not in ("ssd", "grid"):
        raise ConfigError(f"expected ssd:... or grid:..., got {text!r}; {_HOW}", key="--anchors")
    if "image_size" in opts:
        w_text, _, h_text = str(opts.pop("image_size")).partition("x")
        image_size = (int(h_text), int(w_text))
    if image_size is None:
        raise ConfigError("the model has no image input of a fixed size: add image_size=WxH", key="--anchors")
    if "strides" in opts:
        opts["strides"] = [int(v) for v in str(opts["strides"]).split(",")]
    if "background" in opts:
        value = str(opts.pop("background"))
        opts["background_class"] = None if value.lower() in ("none", "null", "") else int(value)
    elif kind == "ssd":
        opts["background_class"] = None
    if kind == "ssd":
        opts.setdefault("box_coding", "center_size")
    try:
        return AnchorDecoding(kind=kind, image_size=image_size, **opts)
    except ValidationError as exc:
        raise ConfigError(f"{text!r}: {why(exc)}", key="--anchors") from None
