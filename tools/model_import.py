"""`edgecascade models import`: inspect a model through shared/backends, write its card.

Guesses only what is safe (one [N, C] output -> a classifier; the [N, D, 4] output of a
detector -> its boxes) and says what it could not guess; the card is checked against the
model before it is written, so a card that does not fit its model is never saved."""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from edgecascade.shared.backends import BackendOptions, load_backend
from edgecascade.shared.backends.base import Signature, TensorSpec
from edgecascade.shared.card_check import card_problems
from edgecascade.shared.errors import ConfigError, ModelLoadError
from edgecascade.shared.features.spec import AudioEncoding, ImageEncoding
from edgecascade.shared.model_card import (
    DetectionCard,
    ModelCard,
    Pipeline,
    ScoreEscalation,
    StatePair,
    TensorCard,
)
from edgecascade.tools.import_anchors import anchor_detection, raw_outputs
from edgecascade.tools.import_options import number, why
from edgecascade.tools.import_options import options as parse_options


@dataclass
class ImportAnswers:
    """What the user said on the command line; None = guess if safe."""

    name: str | None = None
    version: str = "1.0.0"
    task: str | None = None
    labels: list[str] | None = None
    inputs: list[str] = field(default_factory=list)  # --input [NAME=]image|audio[:k=v,...] | [NAME=]raw
    logits: bool = False
    detection: str | None = None  # boxes=..,scores=..,classes=..,count=..,format=..,min_score=..
    anchors: str | None = None  # ssd:strides=..,per_layer=.. | grid:size=..,stride=..
    state: list[str] = field(default_factory=list)  # INPUT=OUTPUT
    escalate: str | None = None  # OUTPUT<THRESHOLD or OUTPUT>THRESHOLD


@dataclass
class ImportResult:
    card: ModelCard
    notes: list[str]


def import_model(path: Path, answers: ImportAnswers) -> ImportResult:
    """Build and check the card for `path`; ConfigError saying what to pass when it cannot."""
    backend = load_backend(path, BackendOptions(warmup_runs=0))
    try:
        sig = backend.signature
    finally:
        backend.close()
    notes: list[str] = []
    state = [_pair(s, sig) for s in answers.state]
    fed = {p.input for p in state}
    produced = {p.output for p in state}
    pipelines = _pipelines(answers.inputs, sig, fed, notes)
    outs = [t for t in sig.outputs if t.name not in produced]
    task = answers.task or _guess_task(outs, notes)
    fields: dict[str, Any] = {}
    labels = answers.labels
    if task == "classification":
        scores = _classifier_output(outs)
        classes = _classes(scores)
        fields["probabilities_output"] = scores.name
        fields["logits"] = answers.logits
        if not answers.logits:
            notes.append(
                f"scores: {scores.name!r} is taken as probabilities; pass --logits if they are logits"
            )
        if labels is None:
            labels = [str(i) for i in range(classes)] if classes > 0 else []
            notes.append(f"labels: not given; using class indices 0..{classes - 1} (pass --labels FILE)")
    elif task == "detection":
        image_size = _image_size(sig, pipelines, fed)
        fields["detection"] = _detection(answers.detection, outs, notes, image_size, answers.anchors)
        if labels is None:
            labels = []
            notes.append(
                "labels: not given; detections are labelled with their class index (pass --labels FILE)"
            )
    if answers.escalate:
        fields["escalation"] = _escalation(answers.escalate)
    elif task == "tensor":
        notes.append("escalation: none (pass --escalate OUTPUT<THRESHOLD to send low scores to the cloud)")
    quantized = any(t.quantization for t in (*sig.inputs, *sig.outputs))
    data = path.read_bytes()
    try:
        card = ModelCard(
            name=answers.name or path.stem,
            version=answers.version,
            backend=backend.name,
            file=path.name,
            sha256=hashlib.sha256(data).hexdigest(),
            size_bytes=len(data),
            task=task,
            quantization="int8" if quantized else "none",
            inputs=[_tensor(t, pipelines.get(t.name)) for t in sig.inputs],
            outputs=[_tensor(t, None) for t in sig.outputs],
            labels=labels or [],
            state=state,
            **fields,
        )
    except ValueError as exc:
        raise ConfigError(f"cannot write a card: {exc}", file=str(path)) from None
    problems = card_problems(card, sig)
    if problems:
        raise ModelLoadError(str(path), "the card would not match the model:\n  " + "\n  ".join(problems))
    dynamic = [t.describe() for t in (*sig.inputs, *sig.outputs) if any(d < 0 for d in t.shape[1:])]
    if dynamic:
        notes.append(f"dynamic dimensions (besides the batch): {'; '.join(dynamic)}")
    return ImportResult(card, notes)


def _guess_task(outs: list[TensorSpec], notes: list[str]) -> str:
    if len(outs) == 1 and _classes(outs[0]) > 1:
        notes.append(f"task: classification (guessed from the one [N, classes] output {outs[0].describe()})")
        return "classification"
    notes.append(
        "task: tensor (not guessed as a classifier: outputs are "
        + "; ".join(t.describe() for t in outs)
        + "); pass --task detection --detection boxes=..,scores=.. for a detector"
    )
    return "tensor"


def _classes(spec: TensorSpec) -> int:
    dims = [d for d in spec.shape[1:] if d != 1]
    return dims[0] if len(dims) == 1 else -1


def _classifier_output(outs: list[TensorSpec]) -> TensorSpec:
    usable = [t for t in outs if _classes(t) > 1]
    if len(usable) != 1:
        raise ConfigError(
            "a classifier needs exactly one [N, classes] output; this model has "
            + "; ".join(t.describe() for t in outs)
            + " (use --task tensor)",
            key="--task",
        )
    return usable[0]


def _pair(text: str, sig: Signature) -> StatePair:
    inp, sep, out = text.partition("=")
    ins, outs = {t.name for t in sig.inputs}, {t.name for t in sig.outputs}
    if not sep or inp not in ins or out not in outs:
        raise ConfigError(
            f"expected INPUT=OUTPUT with an input of {sorted(ins)} and an output of {sorted(outs)}, got {text!r}",
            key="--state",
        )
    return StatePair(input=inp, output=out)


def _pipelines(specs: list[str], sig: Signature, fed: set[str], notes: list[str]) -> dict[str, Pipeline]:
    names = [t.name for t in sig.inputs if t.name not in fed]
    out: dict[str, Pipeline] = {}
    for text in specs:
        name, sep, rest = text.partition("=")
        kinds = ("image", "audio", "raw")
        # NAME=KIND[:...]; an input may itself be named like a kind (`audio=audio:rate=16000`).
        prefixed = sep and ":" not in name and (name not in kinds or rest.partition(":")[0] in kinds)
        if not prefixed:
            if len(names) != 1:
                raise ConfigError(f"name the input: NAME={text}; inputs are {names}", key="--input")
            name, rest = names[0], text
        spec = next((t for t in sig.inputs if t.name == name), None)
        if spec is None:
            raise ConfigError(f"unknown input {name!r}; the model's inputs are {names}", key="--input")
        kind, _, options = rest.partition(":")
        if kind == "raw":
            continue
        if kind == "audio":
            out[name] = _audio(spec, options, notes)
            continue
        if kind != "image":
            raise ConfigError(
                f"expected image[:options], audio:rate=HZ[,options] or raw for input {name!r}, got {kind!r}",
                key="--input",
            )
        out[name] = _image(spec, options)
    for t in sig.inputs:
        if t.name not in out and t.name not in fed and _looks_like_image(t):
            notes.append(
                f"input {t.name!r} {list(t.shape)} may be an image: pass --input {t.name}=image[:...] to accept images (now: raw tensors)"
            )
    return out


def _image_size(sig: Signature, pipelines: dict[str, Pipeline], fed: set[str]) -> tuple[int, int] | None:
    """(height, width) of the model's one image input: its pipeline's, or its fixed 4-D shape's."""
    sizes = {(p.height, p.width) for p in pipelines.values() if isinstance(p, ImageEncoding)}
    if not sizes:
        for t in sig.inputs:
            if t.name not in fed and _looks_like_image(t):
                nchw = t.shape[1] in (1, 3) and t.shape[3] not in (1, 3)
                h, w = (t.shape[2], t.shape[3]) if nchw else (t.shape[1], t.shape[2])
                if h > 0 and w > 0:
                    sizes.add((h, w))
    return next(iter(sizes)) if len(sizes) == 1 else None


def _looks_like_image(t: TensorSpec) -> bool:
    return len(t.shape) == 4 and (t.shape[3] in (1, 3) or t.shape[1] in (1, 3))


def _image(spec: TensorSpec, options: str) -> ImageEncoding:
    """Options: size=WxH, color=rgb|bgr|gray, layout=nhwc|nchw|flat, scale, mean, std,
    interpolation, invert. Unset size, colour and layout come from the input's shape."""
    opts: dict[str, Any] = dict(parse_options(options, f"input {spec.name!r}"))
    shape = spec.shape
    if "layout" not in opts:
        opts["layout"] = (
            "nchw"
            if len(shape) == 4 and shape[1] in (1, 3) and shape[3] not in (1, 3)
            else ("nhwc" if len(shape) == 4 else "flat")
        )
    layout = opts["layout"]
    if len(shape) == 4:
        c, h, w = (shape[1], shape[2], shape[3]) if layout == "nchw" else (shape[3], shape[1], shape[2])
    else:
        c, h, w = 1, -1, -1
    if "size" in opts:
        given = str(opts.pop("size"))
        w_text, _, h_text = given.partition("x")
        try:
            w, h = int(w_text), int(h_text)
        except ValueError:
            raise ConfigError(
                f"size must be WIDTHxHEIGHT in pixels, e.g. size=224x224; got {given[:40]!r}", key="--input"
            ) from None
    if w <= 0 or h <= 0:
        raise ConfigError(
            f"input {spec.name!r} {list(shape)} has no fixed size: pass size=WxH", key="--input"
        )
    opts.setdefault("color", "gray" if c == 1 else "rgb")
    if "scale" in opts:
        opts["scale"] = number(str(opts["scale"]))
    for key in ("mean", "std"):
        if key in opts:
            values = [number(v) for v in str(opts[key]).split(",")]
            opts[key] = values[0] if len(values) == 1 else tuple(values)
    if "invert" in opts:
        opts["invert"] = str(opts["invert"]).lower() in ("1", "true", "yes")
    try:
        return ImageEncoding(width=w, height=h, **opts)
    except ValidationError as exc:
        raise ConfigError(f"input {spec.name!r}: {why(exc)}", key="--input") from None


def _audio(spec: TensorSpec, options: str, notes: list[str]) -> AudioEncoding:
    """Options: rate=HZ (required: nothing in a model says it), samples, values=unit|int16,
    fit=pad_crop|exact, layout, max_seconds. Unset samples, layout and values come from
    the input's shape and dtype: [N, S], [N, 1, S] or [N, S, 1]; int16 inputs take int16 values."""
    opts: dict[str, Any] = dict(parse_options(options, f"input {spec.name!r}"))
    shape = list(spec.shape)
    if "layout" not in opts:
        if len(shape) == 2:
            opts["layout"] = "samples"
        elif len(shape) == 3 and shape[1] == 1:
            opts["layout"] = "channel_samples"
        elif len(shape) == 3 and shape[2] == 1:
            opts["layout"] = "samples_channel"
        else:
            raise ConfigError(
                f"input {spec.name!r} {shape} is not [N, samples], [N, 1, samples] or [N, samples, 1]; "
                "pass layout=samples|channel_samples|samples_channel",
                key="--input",
            )
    if "samples" not in opts:
        window = shape[2] if opts["layout"] == "channel_samples" and len(shape) == 3 else shape[1]
        if window <= 0:
            raise ConfigError(
                f"input {spec.name!r} {shape} has a dynamic window: pass samples=N", key="--input"
            )
        opts["samples"] = window
    if "rate" not in opts:
        raise ConfigError(
            f"input {spec.name!r}: the sample rate is not in the model; pass audio:rate=HZ (e.g. rate=16000)",
            key="--input",
        )
    opts["sample_rate"] = opts.pop("rate")
    if "values" not in opts:
        opts["values"] = "int16" if spec.dtype == "int16" else "unit"
        notes.append(
            f"input {spec.name!r}: audio as "
            + ("int16 PCM values" if opts["values"] == "int16" else "float samples in [-1, 1]")
            + " (pass values=unit|int16)"
        )
    try:
        return AudioEncoding(kind="audio", **opts)
    except ValidationError as exc:
        raise ConfigError(f"input {spec.name!r}: {why(exc)}", key="--input") from None


def _detection(
    text: str | None,
    outs: list[TensorSpec],
    notes: list[str],
    image_size: tuple[int, int] | None = None,
    anchors: str | None = None,
) -> DetectionCard:
    given: dict[str, str] = {}
    for item in filter(None, (text or "").split(",")):
        key, _, value = item.partition("=")
        given[key.strip()] = value.strip()
    # Raw per-anchor outputs (two [N, A, k] tensors), or said so: decoded against anchors.
    if (
        given.get("format") == "anchors"
        or anchors is not None
        or ("format" not in given and "boxes" not in given and raw_outputs(outs) is not None)
    ):
        given.pop("format", None)
        return anchor_detection(given, outs, image_size, anchors, notes)
    by_rank = {
        2: [t for t in outs if len(t.shape) == 2],
        3: [t for t in outs if len(t.shape) == 3 and t.shape[-1] == 4],
    }
    if "boxes" not in given:
        if len(by_rank[3]) != 1:
            raise ConfigError(
                "cannot guess the boxes output; pass --detection boxes=NAME,scores=NAME", key="--detection"
            )
        given["boxes"] = by_rank[3][0].name
        notes.append(f"detection: boxes {given['boxes']!r} (the one [N, D, 4] output)")
    pairs = [t.name for t in by_rank[2]]
    if "scores" not in given:
        named = [n for n in pairs if "score" in n.lower()]
        if len(named) == 1:
            given["scores"] = named[0]
        elif len(pairs) == 1:
            given["scores"] = pairs[0]
        else:
            raise ConfigError(
                f"cannot tell scores from classes among {pairs}; pass --detection scores=NAME,classes=NAME",
                key="--detection",
            )
        notes.append(f"detection: scores {given['scores']!r}")
    if "classes" not in given:
        rest = [n for n in pairs if n != given["scores"]]
        if len(rest) == 1:
            given["classes"] = rest[0]
            notes.append(f"detection: classes {rest[0]!r}")
    if "count" not in given:
        counts = [t.name for t in outs if len(t.shape) == 1 or (len(t.shape) == 2 and t.shape[1] == 1)]
        if len(counts) == 1:
            given["count"] = counts[0]
    if "format" not in given:
        notes.append(
            "detection: boxes taken as normalized y_min, x_min, y_max, x_max (pass format=xyxy|xywh|cxcywh)"
        )
    try:
        return DetectionCard(
            boxes_output=given["boxes"],
            scores_output=given["scores"],
            classes_output=given.get("classes"),
            count_output=given.get("count"),
            box_format=given.get("format", "yxyx"),
            min_score=number(given["min_score"], key="--detection") if "min_score" in given else 0.0,
        )
    except ValueError as exc:
        raise ConfigError(str(exc), key="--detection") from None


def _escalation(text: str) -> ScoreEscalation:
    for op, when in (("<", "below"), (">", "above")):
        name, sep, value = text.partition(op)
        if sep:
            try:
                threshold = float(value)
            except ValueError:
                break
            if math.isfinite(threshold):
                return ScoreEscalation(output=name, threshold=threshold, hard_when=when)
    raise ConfigError(f"expected OUTPUT<THRESHOLD or OUTPUT>THRESHOLD, got {text!r}", key="--escalate")


def _tensor(spec: TensorSpec, pipeline: Pipeline | None) -> TensorCard:
    return TensorCard(name=spec.name, dtype=spec.dtype, shape=[int(d) for d in spec.shape], pipeline=pipeline)
