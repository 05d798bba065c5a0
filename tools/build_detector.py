"""Digit detectors trained here on real digits placed on canvases (tools/build_detector_data.py).

Both are fully convolutional: an MLP trained with scikit-learn on one anchor's patch becomes a
convolution over the canvas (its first layer is a k x k conv, the rest 1x1 convs), so one call
scores all 13 x 13 anchors (16 px squares every 4 px).

  edge:  64 features (the 16 px patch average-pooled to 8x8), MLP(32) classifier + MLP(16) box
         regressor; raw outputs `scores` [N, 169, 11] (softmax, class 0 = background) and
         `deltas` [N, 169, 4] (SSD offsets), decoded by shared/detection; float and int8 (QDQ).
  cloud: the full 16x16 patch, MLP(128, 64) classifier + MLP(64) regressor, with the
         post-processing inside the graph (ONNX NonMaxSuppression), SSD-style outputs
         `boxes` [1, K, 4] (yxyx, normalized), `classes` [1, K], `scores` [1, K], `count` [1].
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgecascade.shared.detection import (
    Detection,
    GridAnchors,
    MatchCounts,
    from_raw_outputs,
    from_ssd_outputs,
    iou_matrix,
    match,
)
from edgecascade.shared.detection.anchors import encode_deltas
from edgecascade.shared.model_card import AnchorDecoding, DetectionCard, ModelCard
from edgecascade.tools.build_detector_data import CANVAS, Canvases

log = logging.getLogger(__name__)

ANCHORS = GridAnchors((CANVAS, CANVAS), size=16, stride=4)
N_ANCHORS = ANCHORS.grid[0] * ANCHORS.grid[1]
N_CLASSES = 11  # background + 10 digits
LABELS = ["background", *(str(d) for d in range(10))]
POS_IOU, NEG_IOU = 0.5, 0.3
NMS_IOU, SCORE_THRESHOLD, MAX_DETECTIONS = 0.3, 0.3, 10


@dataclass(frozen=True)
class DetectorHeads:
    classifier: Any  # fitted MLPClassifier over per-anchor patch features
    regressor: Any  # fitted MLPRegressor: patch features -> SSD offsets
    pooled: bool  # True: 8x8 average-pooled patch (edge); False: the full 16x16 patch (cloud)


def patch_features(images: np.ndarray, pooled: bool) -> np.ndarray:
    """(N, 1, 64, 64) -> (N, 169, F): each anchor's patch, as the exported convolution sees it."""
    from numpy.lib.stride_tricks import sliding_window_view

    x = images[:, 0]
    if pooled:
        x = x.reshape(len(x), CANVAS // 2, 2, CANVAS // 2, 2).mean(axis=(2, 4))
        k, s = ANCHORS.size // 2, ANCHORS.stride // 2
    else:
        k, s = ANCHORS.size, ANCHORS.stride
    win = sliding_window_view(x, (k, k), axis=(1, 2))[:, ::s, ::s]
    return win.reshape(len(x), N_ANCHORS, k * k).astype(np.float32)


def training_samples(data: Canvases, pooled: bool, seed: int = 0) -> tuple[np.ndarray, ...]:
    """(features, class targets, regression features, regression targets): every positive
    anchor (IoU >= 0.5 with a digit) and three negatives (IoU < 0.3) per positive."""
    rng = np.random.default_rng(seed)
    feats = patch_features(data.images, pooled)
    anchors = ANCHORS.xyxy()
    anchors_c = ANCHORS.cxcywh()
    xs, ys, rx, ry = [], [], [], []
    for i, (boxes, classes) in enumerate(zip(data.boxes, data.classes, strict=True)):
        iou = iou_matrix(anchors, boxes)
        best = iou.max(axis=1)
        which = iou.argmax(axis=1)
        pos = np.flatnonzero(best >= POS_IOU)
        neg = np.flatnonzero(best < NEG_IOU)
        neg = rng.choice(neg, size=min(len(neg), 3 * max(len(pos), 1)), replace=False)
        xs += [feats[i, pos], feats[i, neg]]
        ys += [classes[which[pos]] + 1, np.zeros(len(neg), dtype=np.int64)]
        rx.append(feats[i, pos])
        ry.append(encode_deltas(boxes[which[pos]], anchors_c[pos]))
    return np.concatenate(xs), np.concatenate(ys), np.concatenate(rx), np.concatenate(ry)


def train_heads(
    data: Canvases, *, pooled: bool, cls_hidden: tuple[int, ...], reg_hidden: tuple[int, ...]
) -> DetectorHeads:
    from sklearn.neural_network import MLPClassifier, MLPRegressor

    x, y, rx, ry = training_samples(data, pooled)
    log.info("training on %d anchor patches (%d positives)", len(y), int((y > 0).sum()))
    clf = MLPClassifier(
        hidden_layer_sizes=cls_hidden, alpha=1e-3, max_iter=60, random_state=0, early_stopping=True
    ).fit(x, y)
    reg = MLPRegressor(
        hidden_layer_sizes=reg_hidden, alpha=1e-3, max_iter=150, random_state=0, early_stopping=True
    ).fit(rx, ry)
    return DetectorHeads(clf, reg, pooled)


# ---- ONNX export -----------------------------------------------------------------------------


def _conv_mlp(prefix: str, source: str, mlp: Any, kernel: int, stride: int, nodes: list, inits: list) -> str:
    """An MLP over k x k patches as convolutions: layer 0 a k x k conv, then 1x1 convs."""
    from onnx import helper, numpy_helper

    prev = source
    n = len(mlp.coefs_)
    for i, (w, b) in enumerate(zip(mlp.coefs_, mlp.intercepts_, strict=True)):
        out_ch = w.shape[1]
        attrs: dict[str, Any]
        if i == 0:
            weight = w.T.reshape(out_ch, 1, kernel, kernel)
            attrs = {"kernel_shape": [kernel, kernel], "strides": [stride, stride]}
        else:
            weight = w.T.reshape(out_ch, w.shape[0], 1, 1)
            attrs = {"kernel_shape": [1, 1]}
        inits += [
            numpy_helper.from_array(weight.astype(np.float32), f"{prefix}_W{i}"),
            numpy_helper.from_array(b.astype(np.float32), f"{prefix}_B{i}"),
        ]
        out = f"{prefix}_z{i}"
        nodes.append(helper.make_node("Conv", [prev, f"{prefix}_W{i}", f"{prefix}_B{i}"], [out], **attrs))
        if i < n - 1:
            nodes.append(helper.make_node("Relu", [out], [f"{prefix}_h{i}"]))
            out = f"{prefix}_h{i}"
        prev = out
    return prev


def _raw_heads(heads: DetectorHeads, nodes: list, inits: list) -> tuple[str, str]:
    """Nodes computing softmax scores [N, A, 11] and deltas [N, A, 4]; returns their names."""
    from onnx import helper, numpy_helper

    if heads.pooled:
        nodes.append(
            helper.make_node("AveragePool", ["image"], ["pooled"], kernel_shape=[2, 2], strides=[2, 2])
        )
        source, k, s = "pooled", ANCHORS.size // 2, ANCHORS.stride // 2
    else:
        source, k, s = "image", ANCHORS.size, ANCHORS.stride
    logits = _conv_mlp("cls", source, heads.classifier, k, s, nodes, inits)
    deltas = _conv_mlp("reg", source, heads.regressor, k, s, nodes, inits)
    inits += [
        numpy_helper.from_array(np.array([0, N_CLASSES, N_ANCHORS], np.int64), "cls_shape"),
        numpy_helper.from_array(np.array([0, 4, N_ANCHORS], np.int64), "reg_shape"),
    ]
    nodes += [
        helper.make_node("Reshape", [logits, "cls_shape"], ["cls_flat"]),
        helper.make_node("Transpose", ["cls_flat"], ["cls_t"], perm=[0, 2, 1]),
        helper.make_node("Softmax", ["cls_t"], ["scores_raw"], axis=-1),
        helper.make_node("Reshape", [deltas, "reg_shape"], ["reg_flat"]),
        helper.make_node("Transpose", ["reg_flat"], ["deltas_raw"], perm=[0, 2, 1]),
    ]
    return "scores_raw", "deltas_raw"


def _save(nodes: list, inits: list, inputs: list, outputs: list, name: str, path: Path) -> None:
    import onnx
    from onnx import helper

    graph = helper.make_graph(nodes, name, inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="edgecascade")
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))


def export_raw(heads: DetectorHeads, path: Path) -> None:
    """Raw anchor outputs `scores` and `deltas`, any batch size."""
    from onnx import TensorProto, helper

    nodes: list = []
    inits: list = []
    scores, deltas = _raw_heads(heads, nodes, inits)
    nodes += [
        helper.make_node("Identity", [scores], ["scores"]),
        helper.make_node("Identity", [deltas], ["deltas"]),
    ]
    _save(
        nodes,
        inits,
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 1, CANVAS, CANVAS])],
        [
            helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", N_ANCHORS, N_CLASSES]),
            helper.make_tensor_value_info("deltas", TensorProto.FLOAT, ["N", N_ANCHORS, 4]),
        ],
        "digit_detector_raw",
        path,
    )


def export_postprocessed(heads: DetectorHeads, path: Path) -> None:
    """SSD-style outputs with decoding and class-agnostic NMS inside the graph (batch 1)."""
    from onnx import TensorProto, helper

    nodes: list = []
    inits: list = []
    scores, deltas = _raw_heads(heads, nodes, inits)
    inits += _postprocess_constants()
    nodes += _decode_nodes(deltas) + _nms_nodes(scores)
    _save(
        nodes,
        inits,
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 1, CANVAS, CANVAS])],
        [
            helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [1, "K", 4]),
            helper.make_tensor_value_info("classes", TensorProto.FLOAT, [1, "K"]),
            helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, "K"]),
            helper.make_tensor_value_info("count", TensorProto.FLOAT, [1]),
        ],
        "digit_detector_ssd",
        path,
    )


def _postprocess_constants() -> list:
    """The anchors, box variances and NMS settings the post-processing nodes read."""
    from onnx import numpy_helper

    anchors = ANCHORS.cxcywh()[None]  # [1, A, 4]
    return [
        numpy_helper.from_array(anchors[..., :2].copy(), "anchor_xy"),
        numpy_helper.from_array(anchors[..., 2:].copy(), "anchor_wh"),
        numpy_helper.from_array(np.array([0.1], np.float32), "var_xy"),
        numpy_helper.from_array(np.array([0.2], np.float32), "var_wh"),
        numpy_helper.from_array(np.array([0.5], np.float32), "half"),
        numpy_helper.from_array(np.array([-8.0], np.float32), "clip_lo"),
        numpy_helper.from_array(np.array([8.0], np.float32), "clip_hi"),
        numpy_helper.from_array(np.array([2, 2], np.int64), "split_2_2"),
        numpy_helper.from_array(np.array([1], np.int64), "sl_fg_start"),
        numpy_helper.from_array(np.array([N_CLASSES], np.int64), "sl_fg_end"),
        numpy_helper.from_array(np.array([1], np.int64), "ax1"),
        numpy_helper.from_array(np.array([2], np.int64), "ax2"),
        numpy_helper.from_array(np.array([1, 0, 3, 2], np.int64), "to_yxyx"),
        numpy_helper.from_array(np.array([MAX_DETECTIONS], np.int64), "max_out"),
        numpy_helper.from_array(np.array([NMS_IOU], np.float32), "iou_thr"),
        numpy_helper.from_array(np.array([SCORE_THRESHOLD], np.float32), "score_thr"),
        numpy_helper.from_array(np.array([2], np.int64), "col2"),
    ]


def _decode_nodes(deltas: str) -> list:
    """Anchor-relative deltas to [y1, x1, y2, x2] boxes ("boxes_all")."""
    from onnx import helper

    mk = helper.make_node
    return [
        # decode: centers = a_xy + d_xy * 0.1 * a_wh; sizes = a_wh * exp(clip(d_wh * 0.2))
        mk("Split", [deltas, "split_2_2"], ["d_xy", "d_wh"], axis=2),
        mk("Mul", ["d_xy", "var_xy"], ["d_xy_s"]),
        mk("Mul", ["d_xy_s", "anchor_wh"], ["d_xy_p"]),
        mk("Add", ["anchor_xy", "d_xy_p"], ["centers"]),
        mk("Mul", ["d_wh", "var_wh"], ["d_wh_s"]),
        mk("Clip", ["d_wh_s", "clip_lo", "clip_hi"], ["d_wh_c"]),
        mk("Exp", ["d_wh_c"], ["d_wh_e"]),
        mk("Mul", ["anchor_wh", "d_wh_e"], ["sizes"]),
        mk("Mul", ["sizes", "half"], ["half_sizes"]),
        mk("Sub", ["centers", "half_sizes"], ["top_left"]),
        mk("Add", ["centers", "half_sizes"], ["bottom_right"]),
        mk("Concat", ["top_left", "bottom_right"], ["boxes_xyxy"], axis=2),
        mk("Gather", ["boxes_xyxy", "to_yxyx"], ["boxes_all"], axis=2),
    ]


def _nms_nodes(scores: str) -> list:
    """The best foreground class per anchor, class-agnostic NMS, and the kept boxes."""
    from onnx import TensorProto, helper

    mk = helper.make_node
    return [
        # best foreground class per anchor
        mk("Slice", [scores, "sl_fg_start", "sl_fg_end", "ax2"], ["fg"]),
        mk("ReduceMax", ["fg"], ["best"], axes=[2], keepdims=0),
        mk("ArgMax", ["fg"], ["best_class"], axis=2, keepdims=0),
        mk("Unsqueeze", ["best", "ax1"], ["best_3d"]),
        mk("NonMaxSuppression", ["boxes_all", "best_3d", "max_out", "iou_thr", "score_thr"], ["selected"]),
        mk("Gather", ["selected", "col2"], ["sel_col"], axis=1),
        mk("Squeeze", ["sel_col", "ax1"], ["keep"]),
        mk("Gather", ["boxes_all", "keep"], ["boxes"], axis=1),
        mk("Gather", ["best", "keep"], ["scores"], axis=1),
        mk("Gather", ["best_class", "keep"], ["classes_i"], axis=1),
        mk("Cast", ["classes_i"], ["classes"], to=TensorProto.FLOAT),
        mk("Shape", ["keep"], ["count_i"]),
        mk("Cast", ["count_i"], ["count"], to=TensorProto.FLOAT),
    ]


# ---- decoding, as every user of these models does it ---------------------------------------

EDGE_SCORE_THRESHOLD, EDGE_NMS_IOU = 0.5, 0.3


def edge_detections(outputs: dict[str, np.ndarray], index: int = 0) -> list[Detection]:
    """Detections of image `index` in a batch from the raw edge detector's outputs."""
    return from_raw_outputs(
        outputs["scores"][index : index + 1],
        outputs["deltas"][index : index + 1],
        ANCHORS.cxcywh(),
        score_threshold=EDGE_SCORE_THRESHOLD,
        iou_threshold=EDGE_NMS_IOU,
        max_detections=MAX_DETECTIONS,
    )


def cloud_detections(outputs: dict[str, np.ndarray]) -> list[Detection]:
    """Detections from the post-processed (SSD-style) cloud detector's outputs."""
    return from_ssd_outputs(
        outputs["boxes"], outputs["classes"], outputs["scores"], outputs["count"], box_format="yxyx"
    )


def evaluate(detections: list[list[Detection]], data: Canvases) -> MatchCounts:
    """Recall and precision at IoU 0.5 (right class) over `data`."""
    total = MatchCounts()
    for dets, boxes, classes in zip(detections, data.boxes, data.classes, strict=True):
        total.add(match(dets, boxes, classes, 0.5))
    return total


# ---- the committed detectors as detection tasks --------------------------------------------

#: The edge detector's raw outputs: candidates down to the cascade's uncertain band (0.3), the
#: anchor grid and NMS the detector was trained and evaluated with.
EDGE_DETECTION = DetectionCard(
    format="anchors",
    boxes_output="deltas",
    scores_output="scores",
    box_format="xyxy",
    min_score=SCORE_THRESHOLD,
    anchors=AnchorDecoding(
        image_size=(CANVAS, CANVAS),
        size=ANCHORS.size,
        stride=ANCHORS.stride,
        nms_iou=EDGE_NMS_IOU,
        max_detections=MAX_DETECTIONS,
    ),
)
#: The cloud detector's SSD-style outputs (NMS and the 0.3 score floor are in its graph).
CLOUD_DETECTION = DetectionCard(
    format="postprocessed",
    boxes_output="boxes",
    scores_output="scores",
    classes_output="classes",
    count_output="count",
    box_format="yxyx",
)


def detection_card(card: ModelCard) -> ModelCard:
    """A committed digit detector's card (written as schema 1, outputs named as a classifier's)
    as a detection task card: raw anchor outputs (edge) or SSD-style ones (cloud)."""
    names = {t.name for t in card.outputs}
    detection = EDGE_DETECTION if "deltas" in names else CLOUD_DETECTION
    return card.model_copy(update={"task": "detection", "probabilities_output": None, "detection": detection})
