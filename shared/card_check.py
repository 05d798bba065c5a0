"""Check a model card against the model it describes: run at `models import` and whenever a
model is loaded, so a card that does not match its model is refused with the card file, the
field and what was expected, instead of failing later on a request."""

from __future__ import annotations

from pathlib import Path

from edgecascade.shared.backends.base import Signature, TensorSpec
from edgecascade.shared.errors import ModelLoadError
from edgecascade.shared.model_card import AnchorDecoding, ModelCard, TensorCard, shape_fits


def card_problems(card: ModelCard, signature: Signature) -> list[str]:
    """Every mismatch, as 'field: expected ..., model has ...' lines; empty when the card fits."""
    problems: list[str] = []
    problems += _tensors("inputs", card.inputs, signature.inputs)
    problems += _tensors("outputs", card.outputs, signature.outputs)
    outputs = {t.name: t for t in signature.outputs}
    inputs = {t.name: t for t in signature.inputs}
    if card.task == "classification" and card.probabilities_output in outputs:
        problems += _classes(card, outputs[card.probabilities_output])
    if card.detection is not None:
        d = card.detection
        boxes = outputs.get(d.boxes_output)
        # MediaPipe's centre/size boxes carry keypoints after the 4 box values: [N, A, 4 + 2k].
        wide = d.format == "anchors" and d.anchors is not None and d.anchors.box_coding == "center_size"
        if boxes is not None and (
            len(boxes.shape) != 3 or not (boxes.shape[-1] in (4, -1) or (wide and boxes.shape[-1] > 4))
        ):
            problems.append(
                f"detection.boxes_output: expected a [N, detections, {'>=4' if wide else '4'}] output, "
                f"{d.boxes_output!r} is {list(boxes.shape)}"
            )
        # Raw anchor outputs carry a class axis: scores [N, anchors, classes].
        rank, what = (3, "[N, anchors, classes]") if d.format == "anchors" else (2, "[N, detections]")
        for field, name in (("scores_output", d.scores_output), ("classes_output", d.classes_output)):
            spec = outputs.get(name) if name else None
            if spec is not None and len(spec.shape) != rank:
                problems.append(
                    f"detection.{field}: expected a {what} output, {name!r} is {list(spec.shape)}"
                )
        if d.format == "anchors" and d.anchors is None:
            problems.append(
                "detection.anchors: format anchors needs the anchors (kind grid: image_size, size, stride; "
                "kind ssd: image_size, strides, per_layer)"
            )
        if d.format == "anchors" and d.anchors is not None:
            problems += _anchors(d.anchors, outputs.get(d.scores_output), d.scores_output)
    for i, pair in enumerate(card.state):
        src, dst = outputs.get(pair.output), inputs.get(pair.input)
        if src is not None and dst is not None and not shape_fits(src.shape, list(dst.shape)):
            problems.append(
                f"state[{i}]: output {pair.output!r} {list(src.shape)} cannot feed input "
                f"{pair.input!r} {list(dst.shape)}"
            )
    return problems


def check_card(card: ModelCard, signature: Signature, card_path: Path) -> None:
    """Raise ModelLoadError naming the card file and every mismatching field."""
    problems = card_problems(card, signature)
    if problems:
        raise ModelLoadError(str(card_path), "card does not match its model: " + "; ".join(problems))


def _tensors(field: str, declared: list[TensorCard], actual: tuple[TensorSpec, ...]) -> list[str]:
    problems = []
    by_name = {t.name: t for t in actual}
    for i, t in enumerate(declared):
        spec = by_name.get(t.name)
        if spec is None:
            problems.append(f"{field}[{i}].name: {t.name!r} is not in the model; it has {sorted(by_name)}")
            continue
        if not shape_fits(spec.shape, t.shape):
            problems.append(
                f"{field}[{i}].shape: expected {list(spec.shape)} (the model's), card says {t.shape}"
            )
        if spec.dtype != t.dtype:
            problems.append(f"{field}[{i}].dtype: expected {spec.dtype} (the model's), card says {t.dtype}")
        if t.pipeline is not None:
            problems += _pipeline(f"{field}[{i}].pipeline", t, spec)
    missing = sorted(set(by_name) - {t.name for t in declared})
    if missing:
        problems.append(f"{field}: the model's {missing} are missing from the card")
    return problems


def _anchors(spec: AnchorDecoding, scores: TensorSpec | None, name: str) -> list[str]:
    """The card's anchors must be as many as the model's per-anchor scores."""
    from edgecascade.shared.detection.anchors import card_anchors  # detectors only

    if scores is None or len(scores.shape) != 3:
        return []
    problems = []
    count, have = len(card_anchors(spec)), scores.shape[1]
    if have > 0 and count != have:
        problems.append(
            f"detection.anchors: makes {count} anchors for image_size {list(spec.image_size)}, "
            f"{name!r} scores {have} ({list(scores.shape)})"
        )
    classes = scores.shape[2]
    if spec.background_class is not None and classes > 0 and not 0 <= spec.background_class < classes:
        problems.append(
            f"detection.anchors.background_class: {spec.background_class} is not a column of {name!r} "
            f"({classes} classes); unset it (null) when no column means 'no object'"
        )
    return problems


def _pipeline(field: str, t: TensorCard, spec: TensorSpec) -> list[str]:
    """The pipeline must make the model's tensor: checked here, not first on a request."""
    pipe = t.pipeline
    assert pipe is not None
    made = [-1, *pipe.tensor_shape]
    if shape_fits(spec.shape, made):
        return []
    return [
        f"{field}: makes [N, {', '.join(map(str, made[1:]))}] ({pipe.describe()}), the model expects {list(spec.shape)}"
    ]


def _classes(card: ModelCard, spec: TensorSpec) -> list[str]:
    dims = [d for d in spec.shape[1:] if d != 1]
    if len(dims) != 1:
        return [
            f"probabilities_output: expected a [N, classes] output, {spec.name!r} is {list(spec.shape)}; "
            "use --task tensor (or detection) for this model"
        ]
    classes = dims[0]
    if card.labels and classes > 0 and len(card.labels) != classes:
        return [
            f"labels: expected {classes} labels (the classes of {spec.name!r}), card has {len(card.labels)}"
        ]
    return []
