from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.edge.updates.helpers import MODELS, fine_tuned


@pytest.fixture(scope="session")
def signing_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture(scope="session")
def model_v2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fine-tuned 1.1.0 of the factory fp32 model, with its card."""
    out = tmp_path_factory.mktemp("v2") / "digits_edge_fp32.onnx"
    return fine_tuned(MODELS / "digits_edge_fp32.onnx", out, "1.1.0")


@pytest.fixture(scope="session")
def model_v3(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("v3") / "digits_edge_fp32.onnx"
    return fine_tuned(MODELS / "digits_edge_fp32.onnx", out, "1.2.0", seed=1)
