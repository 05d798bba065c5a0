"""The device's V2 gRPC cloud client (`cloud.url = "grpc://host:port"`), chosen by the registry
from the URL's scheme, against the real cloud API's gRPC port."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from edgecascade.cloud.repository import seed_demo_repository
from edgecascade.edge.cascade import Cascade, CascadeRequest
from edgecascade.edge.cloud_client.registry import client_class
from edgecascade.edge.cloud_client.v2_grpc import V2GrpcCloudClient
from edgecascade.edge.config.cloud import CloudSection
from edgecascade.edge.local_model import LocalModel
from edgecascade.edge.model_slot import ModelSlot
from edgecascade.edge.policies import MaxProbabilityPolicy
from edgecascade.shared.backends import BackendOptions, load_backend
from edgecascade.shared.errors import CloudAuthError, CloudUnreachableError, ConfigError
from tests.support.cloud_server import CloudServer


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> Iterator[CloudServer]:
    repo = seed_demo_repository(tmp_path_factory.mktemp("repo") / "models", models_dir)
    srv = CloudServer(repo, tokens={"dev-1": "secret-1"}, grpc=True).start()
    yield srv
    srv.stop()


def client(target: str, **overrides: object) -> V2GrpcCloudClient:
    settings = {
        "url": f"grpc://{target}",
        "token": "secret-1",
        "deadline_s": 1.0,
        "read_timeout_s": 0.5,
        "retries": 2,
        "backoff_base_s": 0.02,
        "breaker_failures": 3,
        "breaker_reset_s": 0.3,
        **overrides,
    }
    cls = client_class(str(settings["url"]))
    assert cls is V2GrpcCloudClient
    return V2GrpcCloudClient(CloudSection.model_validate(settings), device_id="dev-1")


def test_cascade_over_grpc_matches_the_cloud_model(
    server: CloudServer, models_dir: Path, digits_split
) -> None:
    _, held = digits_split
    reference = load_backend(models_dir / "digits_cloud.onnx").predict({"input": held.features[:20]})[
        "probabilities"
    ]
    c = client(server.grpc_target)
    slot = ModelSlot(LocalModel.load(models_dir / "digits_edge_int8.tflite", BackendOptions()))
    cascade = Cascade(slot, MaxProbabilityPolicy(1.01), cloud=c)
    try:
        answers = [cascade.answer(CascadeRequest(held.features[i], request_id=f"g-{i}")) for i in range(20)]
    finally:
        slot.close()
        c.close()
    assert [a.source for a in answers] == ["cloud"] * 20 and not any(a.degraded for a in answers)
    np.testing.assert_allclose(np.stack([a.probabilities for a in answers]), reference, rtol=1e-5, atol=1e-6)
    assert {a.cloud_model.version for a in answers if a.cloud_model} == {"1.0.0"}
    assert c.attempts == 20 and c.facts is not None and c.facts.datatype == "FP32"


def test_wrong_token_is_an_auth_error_not_retried(server: CloudServer, digits_split) -> None:
    _, held = digits_split
    c = client(server.grpc_target, token="wrong")
    try:
        with pytest.raises(CloudAuthError, match="UNAUTHENTICATED"):
            c.infer(held.features[0], request_id="x")
        assert c.attempts == 1
    finally:
        c.close()


def test_a_stopped_server_is_unreachable_then_survived(server: CloudServer, digits_split) -> None:
    _, held = digits_split
    c = client(server.grpc_target)
    try:
        assert c.infer(held.features[0], request_id="before").model.name == "digits-cloud"
        server.stop()
        started = time.monotonic()
        with pytest.raises(CloudUnreachableError):
            c.infer(held.features[0], request_id="during")
        assert time.monotonic() - started < 1.5
        server.start()
        time.sleep(0.35)  # past breaker_reset_s, should it have opened
        assert c.infer(held.features[0], request_id="after").model.name == "digits-cloud"
    finally:
        c.close()


def test_token_over_plain_grpc_to_another_host_is_refused_at_start_up() -> None:
    section = CloudSection.model_validate({"url": "grpc://10.20.30.40:8001", "token": "t0k3n-value"})
    with pytest.raises(ConfigError) as info:
        V2GrpcCloudClient(section)
    assert info.value.key == "cloud.allow_token_over_plain_text"
    assert "t0k3n-value" not in str(info.value)
    allowed = CloudSection.model_validate(
        {"url": "grpc://10.20.30.40:8001", "token": "t", "allow_token_over_plain_text": True}
    )
    V2GrpcCloudClient(allowed).close()
    with pytest.raises(ConfigError, match="host:port"):
        V2GrpcCloudClient(CloudSection.model_validate({"url": "grpc://127.0.0.1"}))
