"""The device's V2 cloud client against the real cloud API on loopback: a healthy cloud, a
wrong token, and a cloud that is down, slow, answers 500 or garbage (a real TCP proxy)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from edgecascade.cloud.repository import seed_demo_repository
from edgecascade.edge.cascade import Cascade, CascadeRequest
from edgecascade.edge.cloud_client.v2_http import V2HttpCloudClient
from edgecascade.edge.config.cloud import CloudSection
from edgecascade.edge.local_model import LocalModel
from edgecascade.edge.model_slot import ModelSlot
from edgecascade.edge.policies import MaxProbabilityPolicy
from edgecascade.shared.backends import BackendOptions
from edgecascade.shared.errors import (
    CircuitOpenError,
    CloudAuthError,
    CloudBadResponseError,
    CloudUnreachableError,
)
from tests.support.cloud_server import CloudServer
from tests.support.faulty_proxy import FaultyProxy


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> Iterator[CloudServer]:
    repo = seed_demo_repository(tmp_path_factory.mktemp("repo") / "models", models_dir)
    srv = CloudServer(repo, tokens={"dev-1": "secret-1"}).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def cloud_reference(models_dir: Path, digits_split) -> np.ndarray:
    from edgecascade.shared.backends import load_backend

    _, held = digits_split
    backend = load_backend(models_dir / "digits_cloud.onnx")
    return backend.predict({"input": held.features[:20]})["probabilities"]


def client(url: str, **overrides: object) -> V2HttpCloudClient:
    settings = {
        "url": url,
        "token": "secret-1",
        "deadline_s": 1.0,
        "read_timeout_s": 0.5,
        "retries": 2,
        "backoff_base_s": 0.02,
        "breaker_failures": 3,
        "breaker_reset_s": 0.5,
        **overrides,
    }
    return V2HttpCloudClient(CloudSection.model_validate(settings), device_id="dev-1")


@pytest.mark.parametrize("binary", [True, False])
def test_answers_match_the_cloud_model(
    server: CloudServer, digits_split, cloud_reference: np.ndarray, binary: bool
) -> None:
    _, held = digits_split
    c = client(server.url, binary_tensors=binary)
    for i in range(20):
        answer = c.infer(held.features[i], request_id=f"req-{binary}-{i}")
        np.testing.assert_allclose(answer.probabilities, cloud_reference[i], rtol=1e-5, atol=1e-6)
        assert answer.model.name == "digits-cloud" and answer.model.version == "1.0.0"
    assert c.attempts == 20 and c.breaker.state == "closed"


def test_wrong_token_is_an_auth_error_not_retried(server: CloudServer, digits_split) -> None:
    _, held = digits_split
    c = client(server.url, token="wrong")
    with pytest.raises(CloudAuthError, match="401"):
        c.infer(held.features[0], request_id="x")
    assert c.attempts == 1


def _edge_cascade(models_dir: Path, cloud: V2HttpCloudClient) -> Cascade:
    slot = ModelSlot(LocalModel.load(models_dir / "digits_edge_int8.tflite", BackendOptions()))
    return Cascade(slot, MaxProbabilityPolicy(1.01), cloud=cloud)  # every case is hard


@pytest.mark.parametrize("mode", ["down", "delay", "http_500", "garbage", "reset", "blackhole"])
def test_faulty_cloud_gives_degraded_local_answers_within_the_deadline(
    server: CloudServer, models_dir: Path, digits_split, mode: str
) -> None:
    _, held = digits_split
    proxy = FaultyProxy(server.port).start()
    if mode == "down":
        proxy.stop()
    else:
        proxy.set_mode(mode, delay_s=3.0)
    c = client(proxy.url)
    cascade = _edge_cascade(models_dir, c)
    try:
        for i in range(6):
            started = time.monotonic()
            answer = cascade.answer(CascadeRequest(held.features[i], request_id=f"{mode}-{i}"))
            assert time.monotonic() - started < 1.5  # deadline 1.0 s plus local work
            assert answer.source == "edge" and answer.degraded and answer.escalated
            assert answer.label == str(int(np.argmax(answer.probabilities)))
        # Three consecutive failures open the breaker: later escalations make no call at all.
        assert c.breaker.state == "open"
        attempts = c.attempts
        assert "breaker open" in cascade.answer(CascadeRequest(held.features[0])).reason
        assert c.attempts == attempts
        # The cloud comes back: after the reset period one probe closes the breaker again.
        if mode == "down":
            proxy.start()
        proxy.set_mode("pass")
        time.sleep(0.6)
        answer = cascade.answer(CascadeRequest(held.features[0], request_id=f"{mode}-back"))
        assert answer.source == "cloud" and not answer.degraded and c.breaker.state == "closed"
    finally:
        proxy.stop()
        cascade.slot.close()


def test_client_errors_are_typed(server: CloudServer, digits_split) -> None:
    _, held = digits_split
    proxy = FaultyProxy(server.port).start()
    try:
        for mode, error in (
            ("http_500", CloudBadResponseError),
            ("garbage", CloudBadResponseError),
            ("blackhole", CloudUnreachableError),
        ):
            proxy.set_mode(mode)
            c = client(proxy.url, breaker_failures=10)
            with pytest.raises(error):
                c.infer(held.features[0], request_id="t")
        proxy.stop()
        c = client(proxy.url, breaker_failures=1)
        with pytest.raises(CloudUnreachableError):
            c.infer(held.features[0], request_id="t")
        with pytest.raises(CircuitOpenError):
            c.infer(held.features[0], request_id="t")
    finally:
        proxy.stop()


def test_server_restart_is_survived(server: CloudServer, digits_split) -> None:
    _, held = digits_split
    c = client(server.url, breaker_reset_s=0.2)
    assert c.infer(held.features[0], request_id="before").model.name == "digits-cloud"
    server.stop()
    with pytest.raises(CloudUnreachableError):
        c.infer(held.features[0], request_id="during")
    server.start()
    time.sleep(0.25)
    assert c.infer(held.features[0], request_id="after").model.name == "digits-cloud"


@pytest.mark.parametrize("allowed", [True, False])
def test_negotiates_binary_once_where_advertised(
    server: CloudServer, digits_split, allowed: bool, caplog
) -> None:
    """Our server lists binary_tensor_data in GET /v2: binary unless the profile says false; the
    metadata is read once, not per escalation."""
    _, held = digits_split
    caplog.set_level(logging.INFO, logger="edgecascade.edge.cloud_client")
    c = client(server.url, binary_tensors=allowed)
    for i in range(5):
        c.infer(held.features[i], request_id=f"neg-{allowed}-{i}")
    assert c.facts is not None and c.facts.binary is allowed
    assert (c.facts.input_name, c.facts.datatype, c.facts.server) == ("input", "FP32", "edgecascade 0.1.0")
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("cloud is ")]
    assert lines == [
        f"cloud is edgecascade 0.1.0: {'binary' if allowed else 'JSON'} tensors, input 'input' as FP32"
    ]


def test_cloud_url_schemes_and_certificate_pairs_are_checked() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="http:// or https:// or grpc:// or grpcs://"):
        CloudSection.model_validate({"url": "ftp://cloud"})
    with pytest.raises(ValidationError, match="client_cert and client_key together"):
        CloudSection.model_validate({"url": "https://cloud", "client_cert": "/x.pem"})
    assert CloudSection.model_validate({"url": "grpcs://cloud:8001/"}).url == "grpcs://cloud:8001"
