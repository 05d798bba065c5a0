"""Transport security between device and cloud, with certificates made here: `cloud serve`
over HTTPS (and gRPC over TLS), the agent verifying it against the profile's CA file, client
certificates as an alternative to tokens, and no token ever sent in plain text to another host
unless the profile says so. The update route's artifact download takes the same CA."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import requests

from edgecascade.cloud.repository import seed_demo_repository
from edgecascade.edge.cloud_client.registry import build_cloud_client, client_class
from edgecascade.edge.cloud_client.retrying import RetryingCloudClient
from edgecascade.edge.cloud_client.tls import artifact_tls
from edgecascade.edge.config.cloud import CloudSection
from edgecascade.edge.config.profile import DeviceProfile
from edgecascade.shared.errors import (
    CloudAuthError,
    CloudBadResponseError,
    CloudUnreachableError,
    ConfigError,
)
from tests.edge.updates.test_tls import Pki, make_pki
from tests.support.cloud_server import CloudServer

TOKENS = {"dev-1": "secret-1"}
# The client certificate's common name is d1: its grant limits it to another model.
MTLS_TOKENS = """
dev-1 = "secret-1"
[d1]
token = "unused-by-d1"
models = ["digits-cloud"]
[d2]
token = "d2-token"
models = ["something-else"]
"""


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> Path:
    return seed_demo_repository(tmp_path_factory.mktemp("repo") / "models", models_dir)


@pytest.fixture(scope="module")
def https_server(repo: Path, pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CloudServer]:
    artifacts = tmp_path_factory.mktemp("artifacts")
    (artifacts / "m" / "1.0.0").mkdir(parents=True)
    (artifacts / "m" / "1.0.0" / "model.onnx").write_bytes(b"x" * 1000)
    srv = CloudServer(
        repo,
        tokens=TOKENS,
        grpc=True,
        tls=(pki.server_cert, pki.server_key),
        ca_file=pki.ca,
        extra_args=("--artifacts-dir", str(artifacts)),
    ).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def mtls_server(repo: Path, pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CloudServer]:
    tokens_file = tmp_path_factory.mktemp("mtls-tokens") / "tokens.toml"
    tokens_file.write_text(MTLS_TOKENS)
    srv = CloudServer(
        repo,
        tokens_file=tokens_file,
        grpc=True,
        tls=(pki.server_cert, pki.server_key),
        tls_client_ca=pki.ca,
        ca_file=pki.ca,
    ).start()
    yield srv
    srv.stop()


def _client(url: str, **settings: object) -> RetryingCloudClient:
    section = CloudSection.model_validate({"url": url, "deadline_s": 3.0, "read_timeout_s": 2.0, **settings})
    client = client_class(url)(section, device_id="dev-1")  # type: ignore[call-arg]
    assert isinstance(client, RetryingCloudClient)
    return client


def _ask(client: RetryingCloudClient, digits_split, request_id: str = "tls") -> str:
    _, held = digits_split
    try:
        answer = client.infer(held.features[0], request_id=request_id)
    finally:
        client.close()
    assert answer.probabilities.shape == (10,) and np.isfinite(answer.probabilities).all()
    return answer.model.version


def test_https_and_grpcs_verified_against_the_profile_ca(
    https_server: CloudServer, pki: Pki, digits_split
) -> None:
    assert https_server.url.startswith("https://")
    url = https_server.url
    assert _ask(_client(url, token="secret-1", ca_file=str(pki.ca)), digits_split) == "1.0.0"
    grpcs = f"grpcs://{https_server.grpc_target}"
    assert _ask(_client(grpcs, token="secret-1", ca_file=str(pki.ca)), digits_split) == "1.0.0"


@pytest.mark.parametrize("scheme", ["https", "grpcs"])
def test_a_server_the_ca_did_not_sign_is_refused_without_retry(
    https_server: CloudServer, pki: Pki, digits_split, scheme: str
) -> None:
    url = https_server.url if scheme == "https" else f"grpcs://{https_server.grpc_target}"
    for ca in (None, pki.other_ca):  # the system's CAs; an unrelated private CA
        settings: dict[str, object] = {"token": "secret-1", "retries": 3}
        if ca is not None:
            settings["ca_file"] = str(ca)
        client = _client(url, **settings)
        with pytest.raises(CloudBadResponseError if scheme == "https" else Exception) as info:
            _ask(client, digits_split)
        if scheme == "https":
            assert "TLS to" in str(info.value) and "CERTIFICATE_VERIFY_FAILED" in str(info.value)
            assert client.attempts == 1  # a certificate does not get better on a retry


def test_plain_http_to_an_https_port_is_refused(https_server: CloudServer, digits_split) -> None:
    client = _client(https_server.url.replace("https://", "http://"), token="secret-1", retries=0)
    with pytest.raises(CloudUnreachableError):  # the TLS listener hangs up on plain HTTP
        _ask(client, digits_split)


def test_client_certificate_instead_of_a_token(mtls_server: CloudServer, pki: Pki, digits_split) -> None:
    cert = {"ca_file": str(pki.ca), "client_cert": str(pki.client_cert), "client_key": str(pki.client_key)}
    assert _ask(_client(mtls_server.url, **cert), digits_split) == "1.0.0"
    assert _ask(_client(f"grpcs://{mtls_server.grpc_target}", **cert), digits_split) == "1.0.0"
    # REST: the certificate is optional, so a token still works and no credential is a 401.
    assert _ask(_client(mtls_server.url, token="secret-1", ca_file=str(pki.ca)), digits_split) == "1.0.0"
    with pytest.raises(CloudAuthError, match="401"):
        _ask(_client(mtls_server.url, ca_file=str(pki.ca)), digits_split)
    # The certificate's common name (d1) is the caller, and d1's grant names its models.
    cert_pair = (str(pki.client_cert), str(pki.client_key))
    ok = requests.get(
        mtls_server.url + "/v2/models/digits-cloud", verify=str(pki.ca), cert=cert_pair, timeout=5
    )
    assert ok.status_code == 200 and ok.json()["name"] == "digits-cloud"
    other = requests.get(mtls_server.url + "/v2/models/nope", verify=str(pki.ca), cert=cert_pair, timeout=5)
    assert other.status_code == 403 and "device 'd1' may not call model 'nope'" in other.json()["error"]
    # A token of a device whose grant excludes the model is still 403 next to a certificate
    # (the certificate wins: d1 may call digits-cloud).
    both = requests.get(
        mtls_server.url + "/v2/models/digits-cloud",
        verify=str(pki.ca),
        cert=cert_pair,
        headers={"Authorization": "Bearer d2-token"},
        timeout=5,
    )
    assert both.status_code == 200
    alone = requests.get(
        mtls_server.url + "/v2/models/digits-cloud",
        verify=str(pki.ca),
        headers={"Authorization": "Bearer d2-token"},
        timeout=5,
    )
    assert alone.status_code == 403


def test_token_guard_for_plain_text(tmp_path: Path) -> None:
    def build(url: str, **extra: object) -> RetryingCloudClient:
        return _client(url, **extra)

    for url in ("http://10.0.0.7:8000", "http://cloud.example.com", "grpc://192.168.1.5:8001"):
        with pytest.raises(ConfigError) as info:
            build(url, token="S3CRET-value")
        assert info.value.key == "cloud.allow_token_over_plain_text"
        assert "S3CRET-value" not in str(info.value)
    token_file = tmp_path / "token"
    token_file.write_text("from-a-file\n")
    with pytest.raises(ConfigError, match="cloud.allow_token_over_plain_text"):
        build("http://10.0.0.7:8000", token_file=str(token_file))
    # Fine: TLS, this machine, no token at all, or the profile's explicit consent.
    for url, extra in (
        ("https://10.0.0.7:8443", {"token": "t"}),
        ("http://127.0.0.1:8000", {"token": "t"}),
        ("http://localhost:8000", {"token": "t"}),
        ("http://[::1]:8000", {"token": "t"}),
        ("http://10.0.0.7:8000", {}),
        ("http://10.0.0.7:8000", {"token": "t", "allow_token_over_plain_text": True}),
    ):
        build(url, **extra).close()


def test_profile_builds_the_client_and_the_artifact_route_uses_the_same_ca(
    https_server: CloudServer, pki: Pki, tmp_path: Path, models_dir: Path
) -> None:
    profile = DeviceProfile.model_validate(
        {
            "profile": "x86-store-pc",
            "data_dir": str(tmp_path / "data"),
            "memory_budget_mb": 300,
            "model": {"path": str(models_dir / "digits_edge_int8.tflite")},
            "cloud": {"url": https_server.url, "token": "secret-1", "ca_file": str(pki.ca)},
        }
    )
    client = build_cloud_client(profile)
    assert type(client).__name__ == "V2HttpCloudClient"
    client.close()
    tls = artifact_tls(profile)
    url = https_server.url + "/artifacts/m/1.0.0/model.onnx"
    assert requests.get(url, verify=tls.verify, timeout=5).content == b"x" * 1000
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(url, timeout=5)  # without the profile's CA
    # [updates] http_ca, where given, wins for the artifact route.
    other = profile.model_copy(
        update={"updates": profile.updates.model_copy(update={"http_ca": pki.other_ca})}
    )
    assert artifact_tls(other).verify == str(pki.other_ca)


def test_server_tls_settings_are_checked_at_start_up(repo: Path, pki: Pki) -> None:
    import subprocess
    import sys

    base = [sys.executable, "-m", "edgecascade", "cloud", "serve", "--repository", str(repo), "--no-auth"]
    for extra, expected in (
        (["--tls-certfile", str(pki.server_cert)], "give tls_certfile and tls_keyfile together"),
        (["--tls-client-ca", str(pki.ca)], "tls_client_ca needs tls_certfile"),
        (
            ["--tls-certfile", str(pki.server_cert), "--tls-keyfile", "/nonexistent/key.pem"],
            "--tls-keyfile: file not found: /nonexistent/key.pem",
        ),
    ):
        done = subprocess.run(base + extra, capture_output=True, text=True, timeout=60)
        assert done.returncode != 0
        assert expected in done.stderr, done.stderr


def test_two_workers_share_the_https_and_grpc_ports(
    repo: Path, pki: Pki, tmp_path: Path, digits_split
) -> None:
    """--workers 2: each worker serves HTTPS with client certificates and binds the gRPC port
    (SO_REUSEPORT); the metrics of both add up; SIGTERM ends it cleanly."""
    tokens_file = tmp_path / "tokens.toml"
    tokens_file.write_text(MTLS_TOKENS)
    srv = CloudServer(
        repo,
        tokens_file=tokens_file,
        workers=2,
        grpc=True,
        tls=(pki.server_cert, pki.server_key),
        tls_client_ca=pki.ca,
        ca_file=pki.ca,
    ).start(timeout_s=60)
    cert = {"ca_file": str(pki.ca), "client_cert": str(pki.client_cert), "client_key": str(pki.client_key)}
    try:
        for i in range(6):  # new connections: the kernel spreads them over the workers
            assert _ask(_client(srv.url, **cert), digits_split, f"rest-{i}") == "1.0.0"
            assert _ask(_client(f"grpcs://{srv.grpc_target}", **cert), digits_split, f"grpc-{i}") == "1.0.0"
        other = requests.get(
            srv.url + "/v2/models/nope",
            verify=str(pki.ca),
            cert=(str(pki.client_cert), str(pki.client_key)),
            timeout=5,
        )
        assert other.status_code == 403
        text = requests.get(srv.url + "/metrics", verify=str(pki.ca), timeout=5).text
        assert 'edgecascade_cloud_inferences_total{model="digits-cloud"} 12.0' in text
    finally:
        assert srv.stop() == 0
    assert srv.log_tail(20000).count("V2 gRPC on 127.0.0.1") == 2
