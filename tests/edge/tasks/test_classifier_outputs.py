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
