"""The model card written beside every artifact (`<artifact>.card.json`): what the model is,
how its inputs are prepared, what its outputs mean.

Schema 2 adds the task (classification, detection, tensor), a pipeline per input, output
meanings (logits, detection outputs and box format, an escalation score), and state pairs.
Schema 1 cards (one encoded input, one probabilities output) are read and upgraded on load."""

import math
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from edgecascade.shared.bounded_read import FileTooLargeError, NotRegularFileError, read_bounded
from edgecascade.shared.config_errors import closest
from edgecascade.shared.errors import ModelError, ModelLoadError
from edgecascade.shared.features.spec import MAX_IMAGE_SIDE, AudioEncoding, FeatureSpec, ImageEncoding

CARD_SUFFIX = ".card.json"
SCHEMA_VERSION = 2
#: A card is a few KiB (a 21,000-class label list stays under 1 MiB); a bigger file is not one,
#: and it is never read whole.
MAX_CARD_BYTES = 16 << 20
#: The most dimensions a card's tensor may have (numpy's own limit is 64).
MAX_RANK = 32
#: The largest dimension a card may state: the runtimes count elements in int64.
MAX_DIM = 2**62

#: The task kinds a card may name. The edge's task registry (edge/tasks/registry.py) has one
#: implementation per kind; a test keeps the two in step.
TASK_KINDS = ("classification", "detection", "tensor")

BoxFormat = Literal["yxyx", "xyxy", "xywh", "cxcywh"]


def _pipeline_kind(value: Any) -> str | None:
    # A pipeline without `kind` is an image (schema 2 cards written before audio existed).
    kind = value.get("kind", "image") if isinstance(value, dict) else getattr(value, "kind", None)
    return kind if isinstance(kind, str) else None


#: How business input becomes one input tensor: encoded images, or WAV audio (`kind: audio`).
#: Told apart by `kind`, so a typo in an image pipeline is reported against the image fields
#: alone, not also as a dozen misfits of the audio ones.
Pipeline = Annotated[
    Annotated[ImageEncoding, Tag("image")] | Annotated[AudioEncoding, Tag("audio")],
    Discriminator(
        _pipeline_kind,
        custom_error_type="pipeline_kind",
        custom_error_message="a pipeline's kind must be 'image' or 'audio'",
    ),
]


class _Strict(BaseModel):
    # NaN and infinity (JSON `NaN`, `Infinity`, `1e999`) are never a meaningful card value: a
    # NaN threshold never escalates, a NaN scale makes every input NaN.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


def _dimension(d: int) -> int:
    if d != -1 and not 0 <= d <= MAX_DIM:
        raise ValueError(f"expected -1 (a dynamic dimension) or a size 0..2**62, got {d}")
    return d


class TensorCard(_Strict):
    """One model input or output. `shape` uses -1 for a dynamic dimension."""

    name: str
    dtype: str
    shape: list[int] = Field(max_length=MAX_RANK)
    pipeline: Pipeline | None = Field(
        None,
        description="Inputs only: how an image (decode, colour, resize, scale, per-channel mean/std, "
        "layout) or a WAV clip (kind audio: sample rate, window, [-1, 1] or int16) becomes this "
        "tensor. Unset = a raw tensor, passed as given.",
    )

    @field_validator("shape")
    @classmethod
    def _dimensions(cls, shape: list[int]) -> list[int]:
        for i, d in enumerate(shape):
            try:
                _dimension(d)
            except ValueError as exc:
                raise ValueError(f"dimension {i}: {exc}") from None
        return shape


#: A side in pixels: an image, an anchor or a stride (shared/features/spec.py's bound).
_Pixels = Annotated[int, Field(gt=0, le=MAX_IMAGE_SIDE)]
#: Most anchors a raw-output detector's card may make (real detectors: 896 to ~25,000).
MAX_ANCHORS = 1 << 20


class AnchorDecoding(_Strict):
    """A detector with raw outputs: per-anchor class scores and boxes against a set of anchors,
    reduced by non-maximum suppression (shared/detection). `kind` grid: square anchors of `size`
    pixels every `stride` pixels, SSD box offsets (variances 0.1, 0.2); `kind` ssd: MediaPipe's
    SSD anchor generator (`strides`, `per_layer`), boxes as centre/size in input pixels."""

    kind: Literal["grid", "ssd"] = Field(
        "grid", description="grid: square anchors on one grid; ssd: MediaPipe's SSD anchor generator."
    )
    image_size: tuple[_Pixels, _Pixels] = Field(description="Input image (height, width) in pixels.")
    size: _Pixels | None = Field(None, description="grid: anchor side, in pixels.")
    stride: _Pixels | None = Field(None, description="grid: anchor step, in pixels.")
    offset: int = Field(
        0, ge=0, le=MAX_IMAGE_SIDE, description="grid: where the first anchor's corner sits, in pixels."
    )
    strides: list[int] = Field(
        default_factory=list,
        max_length=64,
        description="ssd: one stride per layer (consecutive equal strides share a map).",
    )
    per_layer: int = Field(
        2, ge=1, le=1024, description="ssd: anchors per cell per layer (aspect ratios + interpolated)."
    )
    cell_offset: float = Field(0.5, ge=0.0, le=1.0, description="ssd: anchor centre within its cell.")
    box_coding: Literal["offsets", "center_size"] = Field(
        "offsets",
        description="offsets: SSD (dx, dy, dw, dh) with variances 0.1, 0.2 against the anchor; center_size: "
        "MediaPipe's (x, y, w, h) in input pixels, the centre relative to the anchor's (later values, "
        "keypoints, ignored).",
    )
    score_activation: Literal["none", "sigmoid"] = Field(
        "none", description="none: scores are probabilities; sigmoid: they are logits (clipped at +-80)."
    )
    background_class: int | None = Field(
        None,
        description="Score column meaning 'no object'; unset = 0 for kind grid (our detectors' softmax), "
        "none for kind ssd (MediaPipe's detectors have none).",
    )
    nms_iou: float = Field(0.5, gt=0.0, le=1.0, description="Overlap above which the weaker box goes.")
    nms: Literal["hard", "weighted"] = Field(
        "hard",
        description="hard: each cluster of overlapping boxes keeps its best box; weighted: its best score "
        "with the score-weighted mean of the cluster's boxes (MediaPipe's WEIGHTED NMS, which its face "
        "detectors are configured with).",
    )
    max_detections: int = Field(20, ge=1, le=1000, description="Most detections kept per image.")

    @model_validator(mode="before")
    @classmethod
    def _background_by_kind(cls, data: Any) -> Any:
        # The default depends on the kind, so a saved card (written without nulls) reads back the same.
        if isinstance(data, dict) and data.get("kind", "grid") == "grid" and "background_class" not in data:
            return {**data, "background_class": 0}
        return data

    @model_validator(mode="after")
    def _kind_fields(self) -> Self:
        if self.kind == "grid" and (self.size is None or self.stride is None):
            raise ValueError("anchors of kind grid need size and stride (pixels)")
        if self.kind == "ssd" and (not self.strides or min(self.strides) <= 0):
            raise ValueError("anchors of kind ssd need strides, e.g. [8, 16, 16, 16]")
        # Counted without making them: the anchors are built (and held) once per model.
        h, w = self.image_size
        if self.kind == "grid":
            assert self.size is not None and self.stride is not None
            rows, cols = ((side - self.size - self.offset) // self.stride + 1 for side in (h, w))
            count = max(rows, 0) * max(cols, 0)
        else:
            count = sum(-(-h // s) * -(-w // s) * self.per_layer for s in self.strides)
        if count > MAX_ANCHORS:
            raise ValueError(f"makes {count} anchors; at most {MAX_ANCHORS} are supported")
        return self


class DetectionCard(_Strict):
    """Which outputs of a detector hold what: SSD-style post-processed (TFLite
    `TFLite_Detection_PostProcess` order: boxes, classes, scores, count), or with `anchors`, raw
    per-anchor scores [N, A, C] and box offsets [N, A, 4] (`boxes_output`)."""

    format: str = Field(
        "postprocessed",
        description="How the outputs are decoded: postprocessed = SSD-style boxes/classes/scores/count "
        "(shared/detection/decoders.py lists the others; the cloud serves the decoded outputs of shared/detection/served.py).",
    )
    boxes_output: str = Field(description="Output with boxes, [N, D, 4].")
    scores_output: str = Field(description="Output with scores, [N, D].")
    classes_output: str | None = Field(
        None, description="Output with class indices, [N, D]; unset = class 0."
    )
    count_output: str | None = Field(None, description="Output with the valid-detection count, [N].")
    box_format: BoxFormat = Field("yxyx", description="Order of the 4 box values.")
    normalized: bool = Field(True, description="Box coordinates are 0..1 fractions of the image.")
    min_score: float = Field(0.0, ge=0.0, le=1.0, description="Detections below this score are dropped.")
    label_offset: int = Field(0, description="Added to a class index before looking up its label.")
    anchors: AnchorDecoding | None = Field(
        None, description="format = anchors: the anchor grid and NMS of a detector with raw outputs."
    )


class ScoreEscalation(_Strict):
    """A tensor model escalates when one value of `output` crosses `threshold`."""

    output: str = Field(description="Output whose first value per example is the score.")
    threshold: float = Field(description="The cut.")
    hard_when: Literal["below", "above"] = Field("below", description="A case is hard below (or above) it.")


class Calibration(_Strict):
    """Temperature scaling of a classifier, fitted by `edgecascade models tune` on a validation
    split: probabilities = softmax(logits / temperature), with log-probabilities standing in for
    logits when the model outputs probabilities. The edge applies it before any policy."""

    temperature: float = Field(
        gt=0.0, allow_inf_nan=False, description="Divides the logits; > 1 softens, < 1 sharpens."
    )
    fitted_on: str | None = Field(None, description="The data it was fitted on (folder, split, size).")


class StatePair(_Strict):
    """A stateful model's state: the value of `output` feeds `input` on the next call of a session."""

    input: str
    output: str


class ModelCard(BaseModel):
    """What a model is, how it was made and how well it did. Written by tools/ and
    `edgecascade models import`, read by edge/ and cloud/."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=(), allow_inf_nan=False)

    schema_version: int = Field(
        SCHEMA_VERSION,
        description="Card schema; a newer one than this edgecascade reads is refused, not guessed at.",
    )
    name: str = Field(description="Model name, as used in profiles, manifests and V2 URLs.")
    version: str = Field(description="Model version (independent of the agent version).")
    backend: str = Field(description="Backend that runs the artifact: tflite or onnx.")
    file: str = Field(description="Artifact file name, relative to the card.")
    sha256: str
    size_bytes: int = Field(ge=0)
    task: str = Field("classification", description="classification, detection or tensor.")
    dataset: str | None = Field(
        None, description="Data set and split the model was trained and evaluated on."
    )
    heldout_accuracy: float | None = Field(
        None, ge=0.0, le=1.0, description="Top-1 accuracy on the held-out split, 0..1."
    )
    heldout_size: int | None = Field(None, ge=0)
    quantization: str = Field("none", description="none, int8 (full-integer), int8-qdq, ...")
    inputs: list[TensorCard]
    outputs: list[TensorCard]
    probabilities_output: str | None = Field(
        None, description="Classification: the output holding per-class scores."
    )
    logits: bool = Field(False, description="Classification: scores are logits (softmax is applied).")
    labels: list[str] = Field(default_factory=list, description="Class names, in output order.")
    calibration: Calibration | None = Field(
        None, description="Classification: temperature applied to the scores; unset = none."
    )
    features: FeatureSpec | None = Field(
        None, description="Schema 1: the encoding of the one input (schema 2 keeps it per input)."
    )
    detection: DetectionCard | None = Field(None, description="Detection: which output holds what.")
    escalation: ScoreEscalation | None = Field(None, description="Tensor: when a case goes to the cloud.")
    state: list[StatePair] = Field(default_factory=list, description="State inputs fed from outputs.")
    tool_versions: dict[str, str] = Field(default_factory=dict)
    float_source: str | None = Field(None, description="Artifact this one was quantized from, if any.")

    @field_validator("schema_version")
    @classmethod
    def _known_schema(cls, version: int) -> int:
        if not 1 <= version <= SCHEMA_VERSION:
            raise ValueError(
                f"card schema {version} is not one this edgecascade reads (1..{SCHEMA_VERSION}); "
                "a newer edgecascade may have written it"
            )
        return version

    @field_validator("task")
    @classmethod
    def _known_task(cls, task: str) -> str:
        if task not in TASK_KINDS:
            raise ValueError(f"unknown task {task!r}; known tasks: {', '.join(TASK_KINDS)}")
        return task

    @model_validator(mode="before")
    @classmethod
    def _upgrade_v1(cls, data: Any) -> Any:
        # A schema 1 card (and tools/ that still write `features`) keeps the encoding in
        # `features`; schema 2 keeps it on the input, where the pipeline reads it.
        if not isinstance(data, dict):
            return data
        features = data.get("features")
        if features is None:
            return data
        try:
            spec = features if isinstance(features, FeatureSpec) else FeatureSpec.model_validate(features)
        except ValidationError:
            return data  # the `features` field reports it, under its full key
        if isinstance(spec.encoding, ImageEncoding):
            data = dict(data)
            data["inputs"] = [
                _with_pipeline(t, spec.encoding) if _name(t) == spec.input_name else t
                for t in data.get("inputs", [])
            ]
        return data

    @model_validator(mode="after")
    def _task_fields(self) -> Self:
        names = {t.name for t in self.outputs}
        if self.task == "classification" and self.probabilities_output is None:
            raise ValueError("a classification card names its probabilities_output")
        if self.calibration is not None and self.task != "classification":
            raise ValueError(f"calibration applies to classification cards, not {self.task}")
        if self.task == "detection" and self.detection is None:
            raise ValueError("a detection card has a `detection` section naming its outputs")
        for field, out in self._named_outputs():
            if out not in names:
                raise ValueError(f"{field} names output {out!r}; the card's outputs are {sorted(names)}")
        inputs = {t.name for t in self.inputs}
        for i, pair in enumerate(self.state):
            if pair.input not in inputs:
                raise ValueError(f"state[{i}].input names {pair.input!r}; the inputs are {sorted(inputs)}")
        return self

    def _named_outputs(self) -> list[tuple[str, str]]:
        named = [("probabilities_output", self.probabilities_output)]
        if self.detection is not None:
            d = self.detection
            named += [
                ("detection.boxes_output", d.boxes_output),
                ("detection.scores_output", d.scores_output),
                ("detection.classes_output", d.classes_output),
                ("detection.count_output", d.count_output),
            ]
        if self.escalation is not None:
            named.append(("escalation.output", self.escalation.output))
        named += [(f"state[{i}].output", p.output) for i, p in enumerate(self.state)]
        return [(f, n) for f, n in named if n is not None]

    def feature_spec(self) -> FeatureSpec:
        """The schema-1 encoding of a classifier's one input; ModelError for cards without one."""
        if self.features is None:
            raise ModelError(
                f"model card of {self.name!r} has no `features` encoding (schema 1 classifiers only)"
            )
        return self.features

    def scores_output(self) -> str:
        """A classifier's probabilities output; ModelError for other tasks."""
        if self.probabilities_output is None:
            raise ModelError(f"model card of {self.name!r} names no probabilities_output ({self.task} model)")
        return self.probabilities_output

    def input(self, name: str) -> TensorCard:
        for t in self.inputs:
            if t.name == name:
                return t
        raise KeyError(name)

    def output(self, name: str) -> TensorCard:
        for t in self.outputs:
            if t.name == name:
                return t
        raise KeyError(name)

    @staticmethod
    def path_for(artifact: Path) -> Path:
        return artifact.with_name(artifact.name + CARD_SUFFIX)

    @classmethod
    def load_for(cls, artifact: Path) -> Self:
        """Read the card beside `artifact`; raises ModelLoadError naming the card (and the key)
        if absent or invalid, in one line. Read in bounded memory: a FIFO, a device or a file
        over MAX_CARD_BYTES is refused unread."""
        card_path = cls.path_for(artifact)
        try:
            data = read_bounded(card_path, MAX_CARD_BYTES)
        except FileNotFoundError:
            raise ModelLoadError(str(artifact), _missing_card(artifact, card_path)) from None
        except IsADirectoryError:
            raise ModelLoadError(str(card_path), "is a folder, not a model card file") from None
        except NotRegularFileError:
            raise ModelLoadError(
                str(card_path), "not a regular file (a device, pipe or socket), not a model card"
            ) from None
        except FileTooLargeError:
            raise ModelLoadError(
                str(card_path), f"over {MAX_CARD_BYTES >> 20} MiB: not a model card (cards are a few KiB)"
            ) from None
        except OSError as exc:
            raise ModelLoadError(str(card_path), f"cannot read it ({exc.strerror or exc})") from None
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ModelLoadError(
                str(card_path),
                f"not UTF-8 text (byte {exc.start} is 0x{data[exc.start]:02x}); a card is JSON",
            ) from None
        try:
            return cls.model_validate_json(text)
        except ValidationError as exc:
            raise ModelLoadError(str(card_path), f"invalid model card: {explain_errors(exc, cls)}") from None

    def save_beside(self, artifact: Path) -> Path:
        path = self.path_for(artifact)
        path.write_text(self.model_dump_json(indent=2, exclude_none=True) + "\n")
        return path


def _missing_card(artifact: Path, card_path: Path) -> str:
    """Why there is no card: the model path itself may be what is wrong (a folder, a pipe)."""
    if artifact.is_dir():
        return "is a folder; expected a model file (.onnx or .tflite)"
    if artifact.exists() and not artifact.is_file():
        return "not a regular file (a device, pipe or socket); expected a model file (.onnx or .tflite)"
    if not artifact.exists():
        return "file not found"
    return f"model card {card_path.name} not found beside it; write one with `edgecascade models import {artifact}`"


def _name(tensor: Any) -> Any:
    return tensor.name if isinstance(tensor, TensorCard) else tensor.get("name")


def _with_pipeline(tensor: Any, encoding: ImageEncoding) -> Any:
    if isinstance(tensor, TensorCard):
        return tensor.model_copy(update={"pipeline": encoding})
    return {**tensor, "pipeline": tensor.get("pipeline") or encoding}


def shape_fits(actual: tuple[int, ...] | list[int], declared: list[int]) -> bool:
    """A model's shape matches a card's, where -1 on either side is any size."""
    if len(actual) != len(declared):
        return False
    return all(a < 0 or d < 0 or a == d for a, d in zip(actual, declared, strict=True))


def element_count(shape: list[int]) -> int | None:
    """Elements of a shape without its batch axis; None if a dimension is dynamic."""
    dims = shape[1:]
    return None if any(d < 0 for d in dims) else math.prod(dims)


# -- one line for a person, from a ValidationError -------------------------------------------
#: Problems spelled out in one error line; the rest are counted.
MAX_PROBLEMS = 3
_SHOWN = 60


def explain_errors(exc: ValidationError, root: type[BaseModel]) -> str:
    """`exc` as one line: each problem's key (`inputs[0].pipeline.std`), what was expected and
    the value given, with the known key a typo most likely meant."""
    # A value that fits no branch of a union (`float | tuple`) fails each: one line per key.
    problems: dict[str, str] = {}
    branched: set[str] = set()
    for error in exc.errors():
        where, holders, branch = _walk(tuple(error["loc"]), root)
        problems.setdefault(where, _problem(error, where, holders))
        if branch:
            branched.add(where)
    # Of a union's branches, the one that got further into the value is the one meant: a list
    # with a NaN is reported at its item, not also as "not a number".
    deeper = {w for w in branched if any(o.startswith((f"{w}[", f"{w}.")) for o in problems)}
    parts = [text for where, text in problems.items() if where not in deeper]
    more = len(parts) - MAX_PROBLEMS
    return "; ".join(parts[:MAX_PROBLEMS]) + (f" (and {more} more)" if more > 0 else "")


#: How pydantic labels the branches of a union of plain types in an error's location.
_TYPE_LABELS = {"float", "int", "str", "bool", "bytes", "list", "tuple", "dict", "none"}


def _problem(error: Any, where: str, holders: list[type[BaseModel]]) -> str:
    loc: tuple[str | int, ...] = tuple(error["loc"])
    kind, msg = error["type"], str(error["msg"]).removeprefix("Value error, ")
    if kind == "json_invalid":
        detail = msg.removeprefix("Invalid JSON: ")
        if "recursion limit" in detail:
            detail = f"nested too deeply ({detail})"
        return f"not valid JSON: {detail}"
    if kind == "extra_forbidden" and loc and isinstance(loc[-1], str):
        known = sorted({name for model in holders for name in model.model_fields})
        guess = closest(loc[-1], known)
        hint = f"did you mean {guess!r}?" if guess else f"known keys: {', '.join(known)}"
        return f"{where}: unknown key; {hint}"
    value = error.get("input")
    # A validator's own message already quotes the value it refused.
    quiet = kind in ("missing", "value_error") or isinstance(value, dict | list)
    shown = "" if quiet else f" (got {_short(value)})"
    return f"{where or '(top level)'}: {msg}{shown}"


def _walk(loc: tuple[str | int, ...], root: type[BaseModel]) -> tuple[str, list[type[BaseModel]], bool]:
    """The dotted key of `loc` (list indices as [i], union labels left out), the models that
    hold its last key, and whether it went through a union branch."""
    where = ""
    models: list[type[BaseModel]] = [root]
    branch = False
    for i, part in enumerate(loc):
        if isinstance(part, int):
            where += f"[{part}]"
            continue
        fields = [m.model_fields[part] for m in models if part in m.model_fields]
        if not fields:
            # A tagged union's branch ('image', 'audio') or a plain union's label
            # ('tuple[float, ...]', 'function-after[...]'): not a key.
            tagged = [m for m in models if part in _kinds(m)]
            if tagged or not part.isidentifier() or part in _TYPE_LABELS:
                models, branch = tagged or models, True
                continue
        where += f".{part}" if where else part
        if i < len(loc) - 1:
            models = [sub for f in fields for sub in _models_in(f.annotation)]
    return where, models, branch


def _kinds(model: type[BaseModel]) -> tuple[Any, ...]:
    """The values of a model's `kind: Literal[...]` field, its tag in a tagged union."""
    field = model.model_fields.get("kind")
    return typing.get_args(field.annotation) if field is not None else ()


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models a field can hold, through Optional, unions, lists and Annotated."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType, list, tuple, dict, Annotated):
        return [m for arg in typing.get_args(annotation) for m in _models_in(arg)]
    return []


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _SHOWN else text[: _SHOWN - 3] + "..."
