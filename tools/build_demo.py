"""`edgecascade models build-demo`: train the demo models on real digits and write artifacts + cards.

Artifacts (all committed under tests/fixtures/models/, rebuilt by this command):
  digits_edge_fp32.onnx   small MLP, float: the source the int8 models are quantized from
  digits_edge_int8.onnx   the same MLP, static int8 (QDQ) for ONNX Runtime
  digits_edge_int8.tflite the same MLP, full-integer int8 I/O for LiteRT / tflite-runtime
  digits_cloud.onnx       RBF SVC with probabilities: the larger, more accurate cloud model
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edgecascade.shared.backends import load_backend
from edgecascade.shared.model_card import ModelCard
from edgecascade.tools.artifact_card import probabilities_output, save_artifact_card, tool_versions
from edgecascade.tools.datasets import DATASET_NAME, DIGITS_FEATURES, LABELS, SPLIT, Split, load_split
from edgecascade.tools.onnx_export import mlp_to_onnx, quantize_onnx_int8, svc_to_onnx

if TYPE_CHECKING:
    from sklearn.neural_network import MLPClassifier
    from sklearn.svm import SVC

log = logging.getLogger(__name__)

EDGE_HIDDEN = (128,)
EDGE_ALPHA = 0.1  # L2: a smoother, better-calibrated edge model escalates the right cases
EDGE_NAME, CLOUD_NAME = "digits-edge", "digits-cloud"


def evaluate(path: Path, features: np.ndarray) -> np.ndarray:
    """Run an artifact with the serving backend; returns its probability rows."""
    backend = load_backend(path)
    try:
        out = backend.predict({"input": features})
        return out[probabilities_output(list(out))]
    finally:
        backend.close()


def write_card(
    path: Path,
    *,
    name: str,
    version: str,
    quantization: str,
    probs: np.ndarray,
    labels: np.ndarray,
    float_source: str | None,
    tools: dict[str, str],
) -> ModelCard:
    """Write the card of a digits classifier beside `path`, scored by its held-out `probs`."""
    return save_artifact_card(
        path,
        name=name,
        version=version,
        quantization=quantization,
        accuracy=float((probs.argmax(axis=1) == labels).mean()),
        size=int(labels.shape[0]),
        probabilities=None,
        labels=LABELS,
        features=DIGITS_FEATURES,
        dataset=f"{DATASET_NAME}; {SPLIT}",
        tools=tools,
        float_source=float_source,
    )


def build_demo(
    out_dir: Path, *, tflite: bool = True, progress: Callable[[str], None] = print
) -> list[ModelCard]:
    """Train, export, evaluate with the serving backends and write cards. Returns the cards."""
    out_dir.mkdir(parents=True, exist_ok=True)
    train, held = load_split()
    tools = tool_versions(
        "scikit-learn", "onnx", "skl2onnx", "onnxruntime", "numpy", "opencv-python-headless"
    )

    progress(f"[1/4] training edge MLP{EDGE_HIDDEN} on {len(train.labels)} digits")
    mlp = _train_edge(train)
    fp32 = out_dir / "digits_edge_fp32.onnx"
    mlp_to_onnx(mlp, train.features.shape[1], fp32)
    cards = [_evaluated_card(fp32, EDGE_NAME, "none", held, float_source=None, tools=tools)]

    progress("[2/4] quantizing edge model to int8 ONNX (static, calibrated on training digits)")
    int8_onnx = out_dir / "digits_edge_int8.onnx"
    quantize_onnx_int8(fp32, int8_onnx, train.features)
    cards.append(_evaluated_card(int8_onnx, EDGE_NAME, "int8-qdq", held, float_source=fp32.name, tools=tools))

    if tflite:
        from edgecascade.tools.tflite_export import mlp_to_tflite_int8

        progress("[3/4] converting edge model to full-integer int8 TFLite")
        int8_tflite = out_dir / "digits_edge_int8.tflite"
        tf_version = mlp_to_tflite_int8(mlp, train.features, int8_tflite)
        tf_tools = {**tools, "tensorflow": tf_version}
        cards.append(
            _evaluated_card(int8_tflite, EDGE_NAME, "int8", held, float_source=fp32.name, tools=tf_tools)
        )
    else:
        progress("[3/4] skipped the .tflite conversion (--no-tflite)")

    progress("[4/4] training the cloud model: RBF SVC (C=10) with probabilities")
    cloud = out_dir / "digits_cloud.onnx"
    svc_to_onnx(_train_cloud(train), train.features.shape[1], cloud)
    cards.append(_evaluated_card(cloud, CLOUD_NAME, "none", held, float_source=None, tools=tools))
    for card in cards:
        progress(f"  {card.file:26s} {card.size_bytes:>8d} B  held-out accuracy {card.heldout_accuracy:.2%}")
    return cards


def _train_edge(train: Split) -> MLPClassifier:
    from sklearn.neural_network import MLPClassifier

    return MLPClassifier(EDGE_HIDDEN, alpha=EDGE_ALPHA, max_iter=2000, random_state=0).fit(
        train.features, train.labels
    )


def _train_cloud(train: Split) -> SVC:
    from sklearn.svm import SVC

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # SVC(probability=True) is deprecated, not gone
        return SVC(C=10, probability=True, random_state=0).fit(train.features, train.labels)


def _evaluated_card(
    path: Path, name: str, quantization: str, held: Split, *, float_source: str | None, tools: dict[str, str]
) -> ModelCard:
    """Evaluate the artifact at `path` on the held-out split and write its card (version 1.0.0)."""
    return write_card(
        path,
        name=name,
        version="1.0.0",
        quantization=quantization,
        probs=evaluate(path, held.features),
        labels=held.labels,
        float_source=float_source,
        tools=tools,
    )
