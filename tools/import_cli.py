"""`edgecascade models import MODEL`: write the model card of a third-party model."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edgecascade.shared.model_card import TASK_KINDS


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "import",
        help="inspect a .tflite/.onnx model and write its card, so the agent can serve it",
        description="Inspect MODEL (inputs, outputs, quantization, dynamic dimensions) through the serving "
        "backends, guess what is safe (one [N, classes] output = a classifier), say what could not be "
        "guessed, check the card against the model and write MODEL.card.json beside it. Every answer can "
        "be given by flags, so it runs without questions.",
        epilog="examples:\n"
        "  edgecascade models import mobilenet.tflite --labels labels.txt --input image:scale=1/127.5,mean=1\n"
        "  edgecascade models import resnet.onnx --input image:mean=0.485,0.456,0.406,std=0.229,0.224,0.225\n"
        "  edgecascade models import ssd.tflite --task detection --labels coco.txt\n"
        "  edgecascade models import face_detection_short_range.tflite --task detection --input image:scale=1/127.5,mean=1\n"
        "  edgecascade models import selfie_seg.onnx --task tensor --input image\n"
        "  edgecascade models import kws.onnx --task tensor --state state_in=state_out\n"
        "  edgecascade models import tones.onnx --labels tones.txt --input audio:rate=16000\n"
        "then: edgecascade agent run --model MODEL",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", type=Path, metavar="MODEL", help="model file (.tflite or .onnx)")
    p.add_argument("--name", help="model name (default: the file name without extension)")
    p.add_argument("--version", default="1.0.0", help="model version (default: %(default)s)")
    p.add_argument("--task", choices=TASK_KINDS, help="what the model does (default: guessed)")
    p.add_argument("--labels", type=Path, metavar="FILE", help="class names, one per line, in output order")
    p.add_argument(
        "--input",
        action="append",
        default=[],
        metavar="SPEC",
        help="[NAME=]image[:size=WxH,color=rgb|bgr|gray,layout=nhwc|nchw|flat,scale=1/255,mean=0,std=1] "
        "to accept encoded images for an input (per-channel: mean=0.485,0.456,0.406,std=0.229,0.224,0.225), "
        "[NAME=]audio:rate=HZ[,samples=N,values=unit|int16,fit=pad_crop|exact] to accept WAV clips, "
        "or [NAME=]raw; repeat per input",
    )
    p.add_argument(
        "--logits", action="store_true", help="classification: the scores are logits (softmax them)"
    )
    p.add_argument(
        "--detection",
        metavar="SPEC",
        help="boxes=NAME,scores=NAME,classes=NAME,count=NAME,format=yxyx|xyxy|xywh|cxcywh,min_score=F; "
        "format=anchors for raw per-anchor outputs (guessed when the model has exactly two [N, A, k] outputs)",
    )
    p.add_argument(
        "--anchors",
        metavar="SPEC",
        help="raw-output detectors: ssd:strides=8,16,16,16,per_layer=2 (MediaPipe's SSD anchors) or "
        "grid:size=16,stride=4[,offset=0]; options box_coding=offsets|center_size, "
        "score_activation=none|sigmoid, background=INDEX|none, nms_iou=F, nms=hard|weighted, max_detections=N "
        "(default: guessed from MediaPipe's standard configurations when exactly one fits)",
    )
    p.add_argument(
        "--state", action="append", default=[], metavar="IN=OUT", help="a state pair; repeat per pair"
    )
    p.add_argument(
        "--escalate",
        metavar="OUTPUT<T",
        help="tensor models: escalate when OUTPUT is below (<) or above (>) T",
    )
    p.set_defaults(func=_import)


def _import(args: argparse.Namespace) -> int:
    from edgecascade.edge.model_check import check_in_child
    from edgecascade.shared.errors import EdgecascadeError
    from edgecascade.tools.model_import import ImportAnswers, import_model

    try:
        _check_names(args.name, args.version)
        labels = _labels(args.labels) if args.labels else None
        # A crafted model can crash the runtime natively (a segfault): it does so in a child
        # process, and this command reports it, before the model is opened here.
        check_in_child([(args.model, None)], bare=True)
        result = import_model(
            args.model,
            ImportAnswers(
                name=args.name,
                version=args.version,
                task=args.task,
                labels=labels,
                inputs=args.input,
                logits=args.logits,
                detection=args.detection,
                anchors=args.anchors,
                state=args.state,
                escalate=args.escalate,
            ),
        )
    except EdgecascadeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    path = result.card.save_beside(args.model)
    card = result.card
    print(
        f"wrote {path}: {card.name} {card.version}, task {card.task}, {card.backend}, quantization {card.quantization}"
    )
    for t in card.inputs:
        print(
            f"  input  {t.name}: {t.dtype} {t.shape}" + (f" ({t.pipeline.describe()})" if t.pipeline else "")
        )
    for t in card.outputs:
        print(f"  output {t.name}: {t.dtype} {t.shape}")
    for note in result.notes:
        print(f"  note: {note}")
    return 0


def _check_names(name: str | None, version: str) -> None:
    """--name and --version become a profile's model name, MQTT topic levels and folders on the
    device: a card no profile could load is refused before anything is written."""
    from edgecascade.shared.cli_values import text_problem
    from edgecascade.shared.errors import ConfigError
    from edgecascade.shared.topic_segments import check_model_name

    for flag, value in (("--name", name), ("--version", version)):
        if value is None:
            continue
        problem = text_problem(value)
        if problem is None:
            try:
                check_model_name(value)
            except ValueError as exc:
                problem = str(exc)
        if problem is not None:
            raise ConfigError(problem, key=flag)


#: A labels file is text, one class a line: 16 MiB is far more than any label set.
MAX_LABELS_BYTES = 16 << 20


def _labels(path: Path) -> list[str]:
    from edgecascade.shared.bounded_read import FileTooLargeError, NotRegularFileError, read_bounded
    from edgecascade.shared.errors import ConfigError

    # Bounded: a FIFO would block the read, /dev/zero would fill memory.
    try:
        data = read_bounded(path, MAX_LABELS_BYTES)
    except (IsADirectoryError, NotRegularFileError):
        raise ConfigError("not a regular file (a folder, device, pipe or socket)", file=str(path)) from None
    except FileTooLargeError:
        raise ConfigError(f"over {MAX_LABELS_BYTES >> 20} MiB: not a labels file", file=str(path)) from None
    except OSError as exc:
        raise ConfigError(f"cannot read labels ({exc.strerror or exc})", file=str(path)) from None
    try:
        text = data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"not UTF-8 text (byte {exc.start} is 0x{data[exc.start]:02x}); expected one label a line",
            file=str(path),
        ) from None
    labels = [line.strip() for line in text.splitlines() if line.strip()]
    if not labels:
        raise ConfigError("no labels in the file (one per line)", file=str(path))
    if "\x00" in text:
        raise ConfigError("holds a NUL character: not a text file of labels", file=str(path))
    return labels
