"""Convert a trained MLP to a full-integer int8 `.tflite` (needs the `tflite-convert` extra).

Full-int8 with a representative data set, not dynamic-range: current TensorFlow emits
FULLY_CONNECTED v12 for dynamic-range models, which tflite-runtime 2.14 cannot load."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np


def mlp_to_tflite_int8(mlp: Any, calibration: np.ndarray, path: Path) -> str:
    """Rebuild the MLP in Keras with its trained weights, convert to int8 I/O. Returns TF's version."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        import tensorflow as tf
    except ImportError as exc:
        raise SystemExit(
            "TensorFlow is needed only to convert to .tflite: pip install 'edgecascade[tflite-convert]'"
        ) from exc

    n_features = mlp.coefs_[0].shape[0]
    layers: list[Any] = [tf.keras.Input(shape=(n_features,), name="input")]
    for i in range(len(mlp.coefs_)):
        last = i == len(mlp.coefs_) - 1
        layers.append(tf.keras.layers.Dense(mlp.coefs_[i].shape[1], activation="softmax" if last else "relu"))
    model = tf.keras.Sequential(layers)
    for dense, w, b in zip(model.layers, mlp.coefs_, mlp.intercepts_, strict=True):
        dense.set_weights([w.astype(np.float32), b.astype(np.float32)])

    def representative() -> Any:
        for row in calibration.astype(np.float32):
            yield [row[None, :]]

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    path.write_bytes(converter.convert())
    return str(tf.__version__)
