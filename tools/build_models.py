"""Build the model fixtures beyond the demo's: every kind the backends must serve, from real data.

    python -m edgecascade.tools.build_models --out tests/fixtures/models

  digit_detector_fp32.onnx   edge detector, raw anchor outputs (scores, deltas), float
  digit_detector_int8.onnx   the same, static int8 (QDQ), calibrated on training canvases
  digit_detector_cloud.onnx  larger cloud detector with SSD-style outputs (boxes, classes,
                             scores, count) and NMS in the graph
  digits_rgb_nchw.onnx       classifier of colour digits: image float32[N, 3, 16, 16]
  digits_rows_stateful.onnx  streaming classifier fed one 8-pixel row per call; its state
                             input/output pair carries the last 7 rows

Each gets a model card (the current format), a `<artifact>.io.json` sidecar describing its
task and outputs, and a `<artifact>.sample.npz` with one real input per input name (for
warm-up and golden vectors). The detectors learn from real digits placed on canvases
(tools/build_detector_data.py); figures are on held-out canvases of held-out digits."""

from __future__ import annotations

import argparse
import json
import logging
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgecascade.shared.backends import BackendOptions, load_backend
from edgecascade.shared.features import FeatureSpec, ImageEncoding, VectorEncoding
from edgecascade.tools import build_detector as det
from edgecascade.tools.artifact_card import save_artifact_card, tool_versions
from edgecascade.tools.build_detector_data import Canvases, canvas_splits
from edgecascade.tools.datasets import DATASET_NAME, LABELS, SPLIT, load_split
from edgecascade.tools.onnx_export import mlp_layers
from edgecascade.tools.quantize import quantize_static_int8

log = logging.getLogger(__name__)

CANVAS_DATASET = f"{DATASET_NAME}, 1-3 digits of 12-20 px on 64x64 canvases; {SPLIT}"
ROW_STATE = 56  # the last 7 rows of 8 pixels


def _sidecar(path: Path, info: dict[str, Any], sample: dict[str, np.ndarray]) -> None:
    path.with_name(path.name + ".io.json").write_text(json.dumps(info, indent=2) + "\n")
    np.savez_compressed(path.with_name(path.name + ".sample.npz"), **sample)  # type: ignore[arg-type]


RAW_DETECTOR_INFO = {
    "task": "detection",
    "outputs": {
        "scores": "per-anchor class probabilities, column 0 = background",
        "deltas": "SSD box offsets",
    },
    "decode": {
        "kind": "anchors",
        "anchors": {"image_size": [64, 64], "size": det.ANCHORS.size, "stride": det.ANCHORS.stride},
        "variances": [0.1, 0.2],
        "background_class": 0,
        "score_threshold": det.EDGE_SCORE_THRESHOLD,
        "nms_iou": det.EDGE_NMS_IOU,
    },
    "labels": LABELS,
}


def describe_raw_detector(
    path: Path, *, quantization: str, float_source: str | None, layout: str, tools: dict[str, str]
) -> tuple[float, float]:
    """Evaluate a raw-output detector on the held-out canvases and write its card and sidecar.
    `layout` is the image layout it takes (nchw or nhwc). Returns (recall, precision)."""
    _, held = canvas_splits(train_count=1)
    images = held.images if layout == "nchw" else held.images.transpose(0, 2, 3, 1)
    sample = {"image": images[:1]}
    backend = load_backend(path, BackendOptions(warmup_inputs=sample))
    batch = backend.signature.inputs[0].shape[0] < 0
    if batch:
        outputs = backend.predict({"image": images})
        dets = [det.edge_detections(outputs, i) for i in range(len(images))]
    else:
        dets = [
            det.edge_detections(backend.predict({"image": images[i : i + 1]})) for i in range(len(images))
        ]
    backend.close()
    counts = det.evaluate(dets, held)
    spec = FeatureSpec(
        input_name="image",
        encoding=ImageEncoding(width=64, height=64, color="gray", scale=1 / 255, layout=layout),
    )
    save_artifact_card(path, name="digit-detector", quantization=quantization, accuracy=counts.recall, size=counts.tp + counts.fn,
          probabilities="scores", labels=LABELS, features=spec, dataset=CANVAS_DATASET, tools=tools,
          float_source=float_source)  # fmt: skip
    metrics = {"recall_iou50": round(counts.recall, 4), "precision_iou50": round(counts.precision, 4)}
    _sidecar(path, {**RAW_DETECTOR_INFO, "metrics": metrics}, sample)
    return counts.recall, counts.precision


def build_detectors(out: Path, tools: dict[str, str], progress: Callable[[str], None]) -> None:
    train, held = canvas_splits()
    progress("[detector 1/4] training the edge detector heads (MLP(32) + MLP(16) over 8x8 patches)")
    edge = det.train_heads(train, pooled=True, cls_hidden=(32,), reg_hidden=(16,))
    fp32 = out / "digit_detector_fp32.onnx"
    det.export_raw(edge, fp32)
    progress("[detector 2/4] quantizing it to int8 (QDQ), calibrated on 200 training canvases")
    int8 = out / "digit_detector_int8.onnx"
    quantize_static_int8(fp32, int8, [{"image": train.images[i : i + 1]} for i in range(200)])
    progress("[detector 3/4] training the cloud detector (MLP(128, 64) + MLP(64) over 16x16 patches)")
    cloud_heads = det.train_heads(train, pooled=False, cls_hidden=(128, 64), reg_hidden=(64,))
    cloud = out / "digit_detector_cloud.onnx"
    det.export_postprocessed(cloud_heads, cloud)

    progress(f"[detector 4/4] evaluating on {len(held.images)} held-out canvases")
    for path, quant, source in ((fp32, "none", None), (int8, "int8-qdq", fp32.name)):
        recall, precision = describe_raw_detector(
            path, quantization=quant, float_source=source, layout="nchw", tools=tools
        )
        progress(
            f"  {path.name:28s} {path.stat().st_size:>8d} B  recall {recall:.2%} precision {precision:.2%}"
        )
    recall, precision = _describe_cloud_detector(cloud, held, tools)
    progress(
        f"  {cloud.name:28s} {cloud.stat().st_size:>8d} B  recall {recall:.2%} precision {precision:.2%}"
    )


def _describe_cloud_detector(cloud: Path, held: Canvases, tools: dict[str, str]) -> tuple[float, float]:
    """Evaluate the post-processed cloud detector on the held-out canvases and write its card
    and sidecar. Returns (recall, precision)."""
    image_spec = FeatureSpec(
        input_name="image",
        encoding=ImageEncoding(width=64, height=64, color="gray", scale=1 / 255, layout="nchw"),
    )
    sample = {"image": held.images[:1]}
    backend = load_backend(cloud, BackendOptions(warmup_inputs=sample))
    dets = [
        det.cloud_detections(backend.predict({"image": held.images[i : i + 1]}))
        for i in range(len(held.images))
    ]
    backend.close()
    counts = det.evaluate(dets, held)
    save_artifact_card(cloud, name="digit-detector-cloud", quantization="none", accuracy=counts.recall,
          size=counts.tp + counts.fn, probabilities="scores", labels=LABELS, features=image_spec,
          dataset=CANVAS_DATASET, tools=tools)  # fmt: skip
    cloud_info = {
        "task": "detection",
        "outputs": {"boxes": "[1, K, 4]", "classes": "[1, K]", "scores": "[1, K]", "count": "[1]"},
        "decode": {
            "kind": "ssd_postprocessed",
            "box_format": "yxyx",
            "normalized": True,
            "score_threshold": det.SCORE_THRESHOLD,
            "nms_iou": det.NMS_IOU,
        },  # fmt: skip
        "labels": LABELS,
        "metrics": {"recall_iou50": round(counts.recall, 4), "precision_iou50": round(counts.precision, 4)},
    }
    _sidecar(cloud, cloud_info, sample)
    return counts.recall, counts.precision


def colour_digits(images: np.ndarray, seed: int) -> np.ndarray:
    """(N, 8, 8) uint8 digits -> (N, 3, 16, 16) float32 RGB 0..1: a random bright ink colour on
    a random dark background, upscaled 2x."""
    rng = np.random.default_rng(seed)
    alpha = np.repeat(np.repeat(images.astype(np.float32) / 255.0, 2, axis=1), 2, axis=2)[:, None]
    ink = rng.uniform(0.55, 1.0, size=(len(images), 3, 1, 1)).astype(np.float32)
    paper = rng.uniform(0.0, 0.35, size=(len(images), 3, 1, 1)).astype(np.float32)
    return (paper * (1 - alpha) + ink * alpha).astype(np.float32)


def _mlp_graph(mlp: Any, inputs: list, outputs: list, pre: list, source: str, out_name: str, name: str, path: Path,
               extra_nodes: list | None = None, extra_inits: list | None = None) -> None:  # fmt: skip
    import onnx
    from onnx import helper

    layer_nodes, layer_inits, prev = mlp_layers(mlp, source)
    nodes, inits = [*pre, *layer_nodes], [*(extra_inits or []), *layer_inits]
    nodes.append(helper.make_node("Softmax", [prev], [out_name], axis=-1))
    nodes += extra_nodes or []
    model = helper.make_model(helper.make_graph(nodes, name, inputs, outputs, inits),
                              opset_imports=[helper.make_opsetid("", 17)], producer_name="edgecascade")  # fmt: skip
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))


def build_rgb_classifier(out: Path, tools: dict[str, str], progress: Callable[[str], None]) -> None:
    from onnx import TensorProto, helper
    from sklearn.neural_network import MLPClassifier

    train, held = load_split()
    x_train, x_held = colour_digits(train.images, 3), colour_digits(held.images, 4)
    progress("[classifier] training MLP(64) on colour digits, NCHW 3x16x16")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mlp = MLPClassifier(hidden_layer_sizes=(64,), alpha=1e-2, max_iter=400, random_state=0)
        mlp.fit(x_train.reshape(len(x_train), -1), train.labels)
    path = out / "digits_rgb_nchw.onnx"
    _mlp_graph(
        mlp,
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, 16, 16])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 10])],
        [helper.make_node("Flatten", ["image"], ["flat"], axis=1)],
        "flat",
        "probabilities",
        "digits_rgb_nchw",
        path,
    )
    backend = load_backend(path)
    acc = float((backend.predict({"image": x_held})["probabilities"].argmax(1) == held.labels).mean())
    backend.close()
    spec = FeatureSpec(
        input_name="image",
        encoding=ImageEncoding(width=16, height=16, color="rgb", scale=1 / 255, layout="nchw"),
    )
    save_artifact_card(path, name="digits-rgb", quantization="none", accuracy=acc, size=len(held.labels), probabilities="probabilities",
          labels=LABELS, features=spec, dataset=f"{DATASET_NAME}, coloured at random and upscaled 2x; {SPLIT}", tools=tools)  # fmt: skip
    _sidecar(path, {"task": "classification", "outputs": {"probabilities": "softmax over 10 digits"}, "labels": LABELS,
                    "metrics": {"heldout_accuracy": round(acc, 4)}}, {"image": x_held[:1]})  # fmt: skip
    progress(f"  {path.name:28s} {path.stat().st_size:>8d} B  held-out accuracy {acc:.2%}")


def run_rows(backend: Any, features: np.ndarray) -> np.ndarray:
    """Feed each (64,) digit row by row, carrying the state; returns the last probabilities."""
    out = []
    for row in features:
        state = np.zeros((1, ROW_STATE), np.float32)
        for r in range(8):
            result = backend.predict({"row": row[None, r * 8 : (r + 1) * 8], "state": state})
            state = result["state_out"]
        out.append(result["probabilities"][0])
    return np.stack(out)


def build_stateful(out: Path, tools: dict[str, str], progress: Callable[[str], None]) -> None:
    from onnx import TensorProto, helper, numpy_helper
    from sklearn.neural_network import MLPClassifier

    train, held = load_split()
    progress("[stateful] training MLP(32) on digits, served one 8-pixel row per call with a 56-value state")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mlp = MLPClassifier(hidden_layer_sizes=(32,), alpha=1e-2, max_iter=600, random_state=0).fit(
            train.features, train.labels
        )
    path = out / "digits_rows_stateful.onnx"
    inits = [numpy_helper.from_array(np.array([8], np.int64), "s_start"), numpy_helper.from_array(np.array([64], np.int64), "s_end"),
             numpy_helper.from_array(np.array([1], np.int64), "s_axis")]  # fmt: skip
    _mlp_graph(
        mlp,
        [
            helper.make_tensor_value_info("row", TensorProto.FLOAT, [1, 8]),
            helper.make_tensor_value_info("state", TensorProto.FLOAT, [1, ROW_STATE]),
        ],  # fmt: skip
        [
            helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [1, 10]),
            helper.make_tensor_value_info("state_out", TensorProto.FLOAT, [1, ROW_STATE]),
        ],  # fmt: skip
        [helper.make_node("Concat", ["state", "row"], ["window"], axis=1)],
        "window",
        "probabilities",
        "digits_rows_stateful",
        path,
        extra_nodes=[helper.make_node("Slice", ["window", "s_start", "s_end", "s_axis"], ["state_out"])],
        extra_inits=inits,
    )
    backend = load_backend(path)
    acc = float((run_rows(backend, held.features).argmax(1) == held.labels).mean())
    backend.close()
    spec = FeatureSpec(input_name="row", encoding=VectorEncoding(length=8))
    save_artifact_card(path, name="digits-rows", quantization="none", accuracy=acc, size=len(held.labels), probabilities="probabilities",
          labels=LABELS, features=spec, dataset=f"{DATASET_NAME}, fed row by row; {SPLIT}", tools=tools)  # fmt: skip
    _sidecar(path, {"task": "tensor", "state": {"input": "state", "output": "state_out", "initial": "zeros"},
                    "outputs": {"probabilities": "softmax over 10 digits given the rows so far", "state_out": "next state"},
                    "labels": LABELS, "metrics": {"heldout_accuracy_after_8_rows": round(acc, 4)}},
             {"row": held.features[:1, :8], "state": np.zeros((1, ROW_STATE), np.float32)})  # fmt: skip
    progress(f"  {path.name:28s} {path.stat().st_size:>8d} B  held-out accuracy after 8 rows {acc:.2%}")


BUILDERS = {"detector": build_detectors, "rgb": build_rgb_classifier, "stateful": build_stateful}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edgecascade.tools.build_models", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--out", type=Path, default=Path("tests/fixtures/models"))
    parser.add_argument(
        "--only", choices=sorted(BUILDERS), action="append", help="build only these (repeatable)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    args.out.mkdir(parents=True, exist_ok=True)
    tools = tool_versions("scikit-learn", "onnx", "onnxruntime", "numpy", "opencv-python-headless")
    for name in args.only or list(BUILDERS):
        BUILDERS[name](args.out, tools, print)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
