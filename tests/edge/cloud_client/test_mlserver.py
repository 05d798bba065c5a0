"""The cascade against a real Seldon MLServer 1.7.1 (its own venv, .venv-mlserver, made by
`tools/dev.py setup`) serving the cloud ONNX model: with the profile's default [cloud] settings
every escalation gets a cloud answer, over REST and over gRPC. MLServer advertises no binary
tensor extension, so the client must negotiate JSON rather than assume binary."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from edgecascade.edge.cascade import Cascade, CascadeRequest
from edgecascade.edge.cloud_client.negotiation import ServerFacts
from edgecascade.edge.cloud_client.registry import client_class
from edgecascade.edge.cloud_client.retrying import RetryingCloudClient
from edgecascade.edge.config.cloud import CloudSection
from edgecascade.edge.local_model import LocalModel
from edgecascade.edge.model_slot import ModelSlot
from edgecascade.edge.policies import MaxProbabilityPolicy
from edgecascade.shared.backends import BackendOptions, load_backend
from edgecascade.tools.bench.mlserver import IndexUnreachable, MlServerProcess, install

ROWS = 30


@pytest.fixture(scope="module")
def mlserver(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> Iterator[MlServerProcess]:
    try:
        exe = install()
    except IndexUnreachable as exc:
        pytest.skip(f"MLServer 1.7.1 is not installed and pip cannot reach a package index: {exc}")
    models = {"digits-cloud": (models_dir / "digits_cloud.onnx", {})}
    server = MlServerProcess(exe, models, tmp_path_factory.mktemp("mlserver")).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def reference(models_dir: Path, digits_split) -> np.ndarray:
    _, held = digits_split
    return load_backend(models_dir / "digits_cloud.onnx").predict({"input": held.features[:ROWS]})[
        "probabilities"
    ]


def _client(url: str) -> RetryingCloudClient:
    # Only the URL: every other [cloud] setting is the profile's default.
    section = CloudSection.model_validate({"url": url})
    cls = client_class(url)
    client = cls(section, device_id="d1")  # type: ignore[call-arg]
    assert isinstance(client, RetryingCloudClient)
    return client


def _every_case_escalated(models_dir: Path, client: RetryingCloudClient) -> Cascade:
    slot = ModelSlot(LocalModel.load(models_dir / "digits_edge_int8.tflite", BackendOptions()))
    return Cascade(slot, MaxProbabilityPolicy(1.01), cloud=client)


@pytest.mark.parametrize("scheme", ["http", "grpc"])
def test_default_settings_get_cloud_answers_from_mlserver(
    mlserver: MlServerProcess,
    models_dir: Path,
    digits_split,
    reference: np.ndarray,
    scheme: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    _, held = digits_split
    url = mlserver.url if scheme == "http" else f"grpc://{mlserver.grpc_target}"
    client = _client(url)
    cascade = _every_case_escalated(models_dir, client)
    caplog.set_level(logging.INFO, logger="edgecascade.edge.cloud_client")
    try:
        answers = [
            cascade.answer(CascadeRequest(held.features[i], request_id=f"{scheme}-{i}")) for i in range(ROWS)
        ]
    finally:
        cascade.slot.close()
        client.close()
    assert [a.source for a in answers] == ["cloud"] * ROWS
    assert sum(a.degraded for a in answers) == 0
    got = np.stack([a.probabilities for a in answers])
    np.testing.assert_allclose(got, reference, rtol=1e-5, atol=1e-6)
    assert client.attempts == ROWS and client.breaker.state == "closed"
    negotiated = [r.getMessage() for r in caplog.records if r.getMessage().startswith("cloud is ")]
    assert len(negotiated) == 1, negotiated  # once per server, not per request
    assert "mlserver 1.7.1" in negotiated[0]
    if scheme == "http":
        # MLServer's GET /v2 lists no extensions: JSON, with no binary request ever tried.
        assert "JSON tensors" in negotiated[0]
        assert not [r for r in caplog.records if "refused a binary-tensor request" in r.getMessage()]


def test_a_server_that_refuses_binary_gets_json_after_one_log_line(
    mlserver: MlServerProcess,
    models_dir: Path,
    digits_split,
    reference: np.ndarray,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """As if MLServer advertised binary tensors: its 500 to the binary body turns the client to
    JSON for good, with one warning, and no escalation is lost."""
    _, held = digits_split
    client = _client(mlserver.url)
    client.facts = ServerFacts("mlserver 1.7.1", True, "input", "FP32")  # type: ignore[attr-defined]
    caplog.set_level(logging.INFO, logger="edgecascade.edge.cloud_client")
    try:
        probs = [client.infer(held.features[i], request_id=f"fallback-{i}").probabilities for i in range(5)]
    finally:
        client.close()
    np.testing.assert_allclose(np.stack(probs), reference[:5], rtol=1e-5, atol=1e-6)
    warnings = [r for r in caplog.records if "refused a binary-tensor request (500" in r.getMessage()]
    assert len(warnings) == 1
    assert client.facts.binary is False  # type: ignore[attr-defined]
