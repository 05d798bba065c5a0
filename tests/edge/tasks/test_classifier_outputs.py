"""Classifiers whatever their output: [N, 1, C] shapes, uint8 scores without a scale,
logits; the cascade sees probabilities in 0..1 and escalates on them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from edgecascade.edge.agent import Agent
from edgecascade.edge.config.embedded import embedded_profile
from edgecascade.edge.tasks import TaskRequest
from edgecascade.tools.model_import import ImportAnswers, import_model
from tests.edge.tasks import onnx_models


def test_uint8_scores_of_shape_n_1_c_become_probabilities(tmp_path: Path) -> None:
    path = onnx_models.quantized_classifier(tmp_path / "q.onnx")
    result = import_model(path, ImportAnswers(labels=["a", "b", "c"]))
    assert result.card.task == "classification" and result.card.probabilities_output == "scores"
    result.card.save_beside(path)
    x = np.random.default_rng(2).random((5, 4), dtype=np.float32)
    raw = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(["scores"], {"x": x})[0]
    agent = Agent.from_profile(embedded_profile([path]))
    try:
        reply = agent.infer("q", TaskRequest({"x": x}))
    finally:
        agent.close()
    want = raw.reshape(5, 3).astype(np.float32) / np.float32(255.0)
    assert np.array_equal(reply.outputs["probabilities"], want)
    assert reply.outputs["label"].tolist() == [
        ["a", "b", "c"][i].encode() for i in raw.reshape(5, 3).argmax(axis=1)
    ]
    assert np.array_equal(reply.outputs["scores"], want)  # its own output name, as probabilities
    # The default policy (max_prob < 0.68) decides on the 0..1 probabilities.
    hard = [p["escalated"] or p["degraded"] for p in reply.provenance]
    assert hard == (want.max(axis=1) < 0.68).tolist()


def test_a_calibrated_uint8_classifier_serves_softmax_of_log_probabilities_over_t(tmp_path: Path) -> None:
    from edgecascade.shared.model_card import Calibration

    path = onnx_models.quantized_classifier(tmp_path / "q.onnx")
    card = import_model(path, ImportAnswers(labels=["a", "b", "c"])).card
    card.model_copy(update={"calibration": Calibration(temperature=1.7)}).save_beside(path)
    x = np.random.default_rng(3).random((6, 4), dtype=np.float32)
    raw = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(["scores"], {"x": x})[0]
    agent = Agent.from_profile(embedded_profile([path]))
    try:
        reply = agent.infer("q", TaskRequest({"x": x}))
    finally:
        agent.close()
    logp = np.log(np.maximum(raw.reshape(6, 3).astype(np.float32) / np.float32(255.0), np.float32(1e-7)))
    e = np.exp((logp - logp.max(axis=1, keepdims=True)) / np.float32(1.7))
    want = e / e.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(reply.outputs["probabilities"], want, rtol=1e-6)
    assert "scores" not in reply.outputs  # the raw scores are not the calibrated probabilities
    hard = [p["escalated"] or p["degraded"] for p in reply.provenance]
    assert hard == (want.max(axis=1) < 0.68).tolist()
