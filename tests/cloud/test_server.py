"""Every endpoint of the real cloud API over real HTTP on loopback (one server process)."""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import requests

from edgecascade.shared.backends import load_backend
from edgecascade.shared.v2 import HEADER_LENGTH, decode_infer_response, encode_infer_request
from tests.support.cloud_server import CloudServer

STORE = {"Authorization": "Bearer tok-store-1"}
KIOSK = {"Authorization": "Bearer tok-kiosk-2"}


@pytest.fixture(scope="module")
def server(cloud_repo: Path, tokens_file: Path) -> Iterator[CloudServer]:
    srv = CloudServer(cloud_repo, tokens_file=tokens_file).start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def rows(digits_split) -> np.ndarray:  # type: ignore[no-untyped-def]
    return digits_split[1].features[:12]


@pytest.fixture(scope="module")
def direct(models_dir: Path, rows: np.ndarray) -> dict[str, np.ndarray]:
    """The same model run directly through ONNX Runtime."""
    backend = load_backend(models_dir / "digits_cloud.onnx")
    return backend.predict({"input": rows})


def infer(
    server: CloudServer, model: str, body: bytes, headers: dict[str, str], **kw: str
) -> requests.Response:
    return requests.post(
        f"{server.url}/v2/models/{model}/infer", data=body, headers={**STORE, **headers, **kw}, timeout=10
    )


def metric(server: CloudServer, name: str, **labels: str) -> float:
    text = requests.get(server.url + "/metrics", timeout=5).text
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pattern = re.escape(name) + (r"\{" + re.escape(want) + r"\}" if want else "") + r" ([0-9.e+]+)"
    found = re.search(pattern, text)
    return float(found.group(1)) if found else 0.0


def test_health_and_server_metadata_need_no_token(server: CloudServer) -> None:
    assert requests.get(server.url + "/v2/health/live", timeout=5).status_code == 200
    assert requests.get(server.url + "/v2/health/ready", timeout=5).status_code == 200
    meta = requests.get(server.url + "/v2", timeout=5).json()
    assert meta["name"] == "edgecascade"
    assert "binary_tensor_data" in meta["extensions"]
    assert requests.get(server.url + "/v2/models/digits-cloud/ready", timeout=5).status_code == 200
    assert (
        requests.get(server.url + "/v2/models/digits-cloud/versions/2.0.0/ready", timeout=5).status_code
        == 200
    )
    unknown = requests.get(server.url + "/v2/models/nope/ready", timeout=5)
    assert unknown.status_code == 404
    # Without a token, a probe learns nothing of the models it did not name.
    assert unknown.json()["error"] == "model 'nope' is not served here"
    other_version = requests.get(server.url + "/v2/models/digits-cloud/versions/9/ready", timeout=5)
    assert other_version.json()["error"] == "model 'digits-cloud' version '9' is not served here"


def test_model_metadata_lists_versions_and_signature(server: CloudServer) -> None:
    meta = requests.get(server.url + "/v2/models/digits-cloud", headers=STORE, timeout=5).json()
    assert meta["name"] == "digits-cloud"
    assert meta["versions"] == ["1.0.0", "2.0.0"]
    assert meta["platform"] == "onnx_onnxv1"
    assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 64]}]
    assert {o["name"]: o["datatype"] for o in meta["outputs"]} == {"label": "INT64", "probabilities": "FP32"}
    assert meta["parameters"]["labels"] == [str(d) for d in range(10)]
    v2 = requests.get(server.url + "/v2/models/digits-cloud/versions/2.0.0", headers=STORE, timeout=5)
    assert v2.status_code == 200
    missing = requests.get(server.url + "/v2/models/digits-cloud/versions/9.9", headers=STORE, timeout=5)
    assert missing.status_code == 404
    assert "9.9" in missing.json()["error"]


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_infer_matches_running_the_model_directly(
    server: CloudServer, rows: np.ndarray, direct: dict[str, np.ndarray], binary: bool
) -> None:
    body, headers = encode_infer_request(
        {"input": rows}, request_id="req-42", binary=binary, binary_outputs=binary
    )
    resp = infer(server, "digits-cloud", body, headers)
    assert resp.status_code == 200, resp.text
    assert (HEADER_LENGTH in resp.headers) is binary
    answer = decode_infer_response(resp.content, resp.headers)
    assert (answer.model_name, answer.model_version, answer.id) == ("digits-cloud", "1.0.0", "req-42")
    assert answer.outputs["label"].tolist() == direct["label"].tolist()
    np.testing.assert_allclose(answer.outputs["probabilities"], direct["probabilities"], rtol=1e-6, atol=1e-7)


def test_infer_on_a_named_version(server: CloudServer, rows: np.ndarray) -> None:
    body, headers = encode_infer_request({"input": rows[:1]})
    resp = requests.post(
        server.url + "/v2/models/digits-cloud/versions/2.0.0/infer",
        data=body,
        headers={**STORE, **headers},
        timeout=10,
    )
    assert resp.status_code == 200
    assert decode_infer_response(resp.content, resp.headers).model_version == "2.0.0"


def test_requested_outputs_and_per_output_binary_are_honoured(server: CloudServer, rows: np.ndarray) -> None:
    doc = {
        "id": "x1",
        "inputs": [{"name": "input", "shape": [2, 64], "datatype": "FP32", "data": rows[:2].tolist()}],
        "outputs": [{"name": "probabilities", "parameters": {"binary_data": True}}, {"name": "label"}],
    }
    resp = infer(server, "digits-cloud", json.dumps(doc).encode(), {"Content-Type": "application/json"})
    assert resp.status_code == 200, resp.text
    head = json.loads(resp.content[: int(resp.headers[HEADER_LENGTH])])
    assert [o["name"] for o in head["outputs"]] == ["probabilities", "label"]
    assert head["outputs"][0]["parameters"]["binary_data_size"] == 2 * 10 * 4
    assert "data" in head["outputs"][1]
    only = {"inputs": doc["inputs"], "outputs": [{"name": "label"}]}
    resp = infer(server, "digits-cloud", json.dumps(only).encode(), {})
    assert HEADER_LENGTH not in resp.headers
    assert [o["name"] for o in resp.json()["outputs"]] == ["label"]


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        (
            {"inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP32", "data": [0.0]}]},
            "inputs[0].data",
        ),
        ({"inputs": [{"name": "input", "shape": "1", "datatype": "FP32", "data": [0.0]}]}, "inputs[0].shape"),
        (
            {
                "inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP32", "data": [0.0] * 64}],
                "outputs": [{"name": "nope"}],
            },
            "outputs[0].name",
        ),
    ],
)
def test_malformed_requests_are_400_naming_the_field(server: CloudServer, doc: dict, field: str) -> None:
    resp = infer(server, "digits-cloud", json.dumps(doc).encode(), {})
    assert resp.status_code == 400
    assert resp.json()["error"].startswith(field + ":")


def test_wrong_signature_and_garbage_are_400(server: CloudServer) -> None:
    body, headers = encode_infer_request({"input": np.zeros((1, 63), np.float32)})
    resp = infer(server, "digits-cloud", body, headers)
    assert resp.status_code == 400
    assert "input" in resp.json()["error"] and "64" in resp.json()["error"]
    resp = infer(server, "digits-cloud", b"\x00\x01garbage", {})
    assert resp.status_code == 400
    assert resp.json()["error"].startswith("body:")


def test_unknown_model_and_version_are_404(server: CloudServer, rows: np.ndarray) -> None:
    body, headers = encode_infer_request({"input": rows[:1]})
    assert infer(server, "no-such-model", body, headers).status_code == 404
    resp = requests.post(
        server.url + "/v2/models/digits-cloud/versions/7/infer",
        data=body,
        headers={**STORE, **headers},
        timeout=10,
    )
    assert resp.status_code == 404
    assert "error" in resp.json()


def test_tokens_401_and_403(server: CloudServer, rows: np.ndarray) -> None:
    body, headers = encode_infer_request({"input": rows[:1]})
    url = server.url + "/v2/models/digits-cloud/infer"
    missing = requests.post(url, data=body, headers=headers, timeout=10)
    assert missing.status_code == 401
    assert missing.headers["WWW-Authenticate"] == "Bearer"
    wrong = requests.post(url, data=body, headers={**headers, "Authorization": "Bearer nope"}, timeout=10)
    assert wrong.status_code == 401
    forbidden = requests.post(url, data=body, headers={**headers, **KIOSK}, timeout=10)
    assert forbidden.status_code == 403
    allowed = requests.post(
        server.url + "/v2/models/digits-batched/infer", data=body, headers={**headers, **KIOSK}, timeout=10
    )
    assert allowed.status_code == 200
    assert requests.get(server.url + "/v2/models/digits-cloud", timeout=5).status_code == 401
    assert "tok-store-1" not in server.log_tail(100_000)


def test_idempotent_retry_is_answered_once(server: CloudServer, rows: np.ndarray) -> None:
    before = metric(server, "edgecascade_cloud_inferences_total", model="digits-cloud")
    body, headers = encode_infer_request(
        {"input": rows[3:4]}, request_id="first", parameters={"idempotency_key": "esc-77"}
    )
    first = infer(server, "digits-cloud", body, headers)
    body2, headers2 = encode_infer_request(
        {"input": rows[3:4]}, request_id="retry", parameters={"idempotency_key": "esc-77"}
    )
    second = infer(server, "digits-cloud", body2, headers2)
    assert first.status_code == second.status_code == 200
    a, b = (
        decode_infer_response(first.content, first.headers),
        decode_infer_response(second.content, second.headers),
    )
    assert (a.id, b.id) == ("first", "retry")
    assert a.outputs["probabilities"].tolist() == b.outputs["probabilities"].tolist()
    assert metric(server, "edgecascade_cloud_inferences_total", model="digits-cloud") == before + 1
    assert metric(server, "edgecascade_cloud_idempotent_replays_total", model="digits-cloud") == 1
    # The key is scoped by device: another device with the same key is computed afresh.
    third = infer(server, "digits-batched", body, headers, Authorization="Bearer tok-kiosk-2")
    assert third.status_code == 200


def test_concurrent_requests_are_batched(server: CloudServer, rows: np.ndarray) -> None:
    count_before = metric(server, "edgecascade_cloud_batch_size_count", model="digits-batched")
    sum_before = metric(server, "edgecascade_cloud_batch_size_sum", model="digits-batched")
    n = 12

    def one(i: int) -> tuple[int, list[int]]:
        body, headers = encode_infer_request({"input": rows[i : i + 1]}, request_id=f"b{i}")
        resp = infer(server, "digits-batched", body, headers)
        answer = decode_infer_response(resp.content, resp.headers)
        assert answer.id == f"b{i}"  # each request gets its own rows back
        return resp.status_code, answer.outputs["label"].tolist()

    with ThreadPoolExecutor(n) as pool:
        results = list(pool.map(one, range(n)))
    assert [code for code, _ in results] == [200] * n
    batches = metric(server, "edgecascade_cloud_batch_size_count", model="digits-batched") - count_before
    merged = metric(server, "edgecascade_cloud_batch_size_sum", model="digits-batched") - sum_before
    assert merged == n  # every request went through exactly one batch
    assert batches < n / 2, f"{n} concurrent requests ran in {batches} batches"


def test_metrics_count_errors_by_status(server: CloudServer) -> None:
    before = metric(server, "edgecascade_cloud_errors_total", status="404")
    requests.post(server.url + "/v2/models/nope/infer", data=b"{}", headers=STORE, timeout=5)
    assert metric(server, "edgecascade_cloud_errors_total", status="404") == before + 1
    assert metric(server, "edgecascade_cloud_infer_latency_seconds_count", model="digits-cloud") >= 1


def _upload(server: CloudServer, length: int, sent: int) -> socket.socket:
    """An authorized infer request declaring `length` bytes of body, `sent` of them sent now."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    sock.sendall(
        b"POST /v2/models/digits-cloud/infer HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        + f"Authorization: {STORE['Authorization']}\r\nContent-Length: {length}\r\n\r\n".encode()
        + b" " * sent
    )
    return sock


def _head(sock: socket.socket) -> str:
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(65536)
        assert chunk, "closed without a reply"
        head += chunk
    return head.decode("latin-1")


def test_request_bodies_in_memory_are_bounded_per_worker(cloud_repo: Path, tokens_file: Path) -> None:
    """Bodies past max_buffered_mb get 503 + Retry-After before they are read; the budget is
    given back once a request is answered."""
    mib = 1 << 20
    srv = CloudServer(
        cloud_repo, tokens_file=tokens_file, extra_args=("--max-body-mb", "4", "--max-buffered-mb", "8")
    ).start()
    sockets: list[socket.socket] = []
    try:
        admitted = [_upload(srv, int(3.5 * mib), 3 * mib) for _ in range(2)]  # 7 of 8 MiB
        sockets += admitted
        time.sleep(0.5)
        refused = [_upload(srv, int(3.5 * mib), 0) for _ in range(10)]
        sockets += refused
        for sock in refused:
            head = _head(sock)
            assert head.startswith("HTTP/1.1 503") and "retry-after: 1" in head.lower(), head
        for sock in admitted:  # not JSON: 400, and the budget comes back
            sock.sendall(b" " * (int(3.5 * mib) - 3 * mib))
            assert _head(sock).startswith("HTTP/1.1 400")
        again = _upload(srv, int(3.5 * mib), int(3.5 * mib))
        sockets.append(again)
        assert _head(again).startswith("HTTP/1.1 400")  # admitted, not 503
        assert metric(srv, "edgecascade_cloud_errors_total", status="503") == 10
    finally:
        for sock in sockets:
            sock.close()
        srv.stop()
