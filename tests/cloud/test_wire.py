"""The cloud API's wire against clients it did not write and requests no client should send:
tritonclient with compression, strict datatypes, a corpus of malformed requests, and bodies
that would take the memory (all over real HTTP on loopback, one real server process each)."""

from __future__ import annotations

import base64
import gzip
import http.client
import json
import socket
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import requests
import tritonclient.http as triton

from edgecascade.shared.backends import load_backend
from edgecascade.shared.v2 import encode_infer_request
from tests.support.cloud_server import CloudServer
from tests.support.malformed_requests import corpus, named_in

MODEL = "digits-cloud"


@pytest.fixture(scope="module")
def server(cloud_repo: Path) -> Iterator[CloudServer]:
    srv = CloudServer(cloud_repo, log_path=cloud_repo.parent / "wire-server.log").start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def rows(digits_split) -> np.ndarray:  # type: ignore[no-untyped-def]
    return digits_split[1].features[:8].astype(np.float32)


@pytest.fixture(scope="module")
def direct(models_dir: Path, rows: np.ndarray) -> dict[str, np.ndarray]:
    return load_backend(models_dir / "digits_cloud.onnx").predict({"input": rows})


def infer_url(server: CloudServer) -> str:
    return f"{server.url}/v2/models/{MODEL}/infer"


def vm(pid: int, key: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key):
            return int(line.split()[1]) / 1024
    raise AssertionError(key)


@pytest.mark.parametrize("request_alg", [None, "gzip", "deflate"])
@pytest.mark.parametrize("response_alg", [None, "gzip", "deflate"])
@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_tritonclient_with_compression(
    server: CloudServer,
    rows: np.ndarray,
    direct: dict[str, np.ndarray],
    request_alg: str | None,
    response_alg: str | None,
    binary: bool,
) -> None:
    client = triton.InferenceServerClient(f"127.0.0.1:{server.port}")
    try:
        assert client.is_server_live() and client.is_model_ready(MODEL)
        assert client.get_model_metadata(MODEL)["inputs"][0]["datatype"] == "FP32"
        tensor = triton.InferInput("input", list(rows.shape), "FP32")
        tensor.set_data_from_numpy(rows, binary_data=binary)
        wanted = [triton.InferRequestedOutput(n, binary_data=binary) for n in ("label", "probabilities")]
        result = client.infer(
            MODEL,
            [tensor],
            outputs=wanted,
            request_id="t-1",
            request_compression_algorithm=request_alg,
            response_compression_algorithm=response_alg,
        )
    finally:
        client.close()
    assert result.get_response()["id"] == "t-1"
    assert result.as_numpy("label").tolist() == direct["label"].tolist()
    np.testing.assert_allclose(
        result.as_numpy("probabilities"), direct["probabilities"], rtol=1e-6, atol=1e-7
    )


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_responses_are_compressed_when_the_client_accepts_it(
    server: CloudServer, rows: np.ndarray, encoding: str
) -> None:
    body, headers = encode_infer_request({"input": rows}, binary=False, binary_outputs=False)
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.request("POST", f"/v2/models/{MODEL}/infer", body, {**headers, "Accept-Encoding": encoding})
    resp = conn.getresponse()
    raw = resp.read()
    conn.close()
    assert resp.status == 200
    assert resp.getheader("Content-Encoding") == encoding
    text = gzip.decompress(raw) if encoding == "gzip" else zlib.decompress(raw)
    assert len(raw) < len(text)
    assert len(json.loads(text)["outputs"]) == 2
    # No Accept-Encoding: plain JSON.
    plain = requests.post(infer_url(server), data=body, headers={**headers, "Accept-Encoding": "identity"})
    assert plain.status_code == 200 and "Content-Encoding" not in plain.headers


@pytest.mark.parametrize(
    ("datatype", "values"),
    [
        ("BOOL", [True] * 64),
        ("INT32", [3] * 64),
        ("UINT8", [3] * 64),
        ("FP64", [0.5] * 64),
        ("FP16", [0.5] * 64),
    ],
)
def test_a_datatype_other_than_the_models_gets_400_naming_both(
    server: CloudServer, datatype: str, values: list[object]
) -> None:
    doc = {"inputs": [{"name": "input", "datatype": datatype, "shape": [1, 64], "data": values}]}
    resp = requests.post(infer_url(server), json=doc, timeout=10)
    assert resp.status_code == 400
    answer = resp.json()
    assert answer["field"] == "inputs[0].datatype"
    assert datatype in answer["error"] and "FP32" in answer["error"]


def test_datatype_conversion_only_where_the_settings_allow_it(cloud_repo: Path) -> None:
    with_conversion = CloudServer(
        cloud_repo, extra_args=("--allow-datatype-conversion",), log_path=cloud_repo.parent / "convert.log"
    ).start()
    try:
        for datatype, values in (("INT32", [3] * 64), ("FP64", [0.5] * 64), ("UINT8", [1] * 64)):
            doc = {"inputs": [{"name": "input", "datatype": datatype, "shape": [1, 64], "data": values}]}
            resp = requests.post(infer_url(with_conversion), json=doc, timeout=10)
            assert resp.status_code == 200, resp.text
        # Conversion is between numbers only: BYTES is never read as numbers. This model's card
        # has an image pipeline, so BYTES must be encoded images, prepared by that pipeline.
        doc = {"inputs": [{"name": "input", "datatype": "BYTES", "shape": [1, 64], "data": ["1"] * 64}]}
        resp = requests.post(infer_url(with_conversion), json=doc, timeout=10)
        assert resp.status_code == 400 and resp.json()["field"] == "inputs[0].data"
        assert "not a decodable image" in resp.json()["error"]
    finally:
        with_conversion.stop()


def test_every_malformed_request_gets_a_4xx_naming_the_field(server: CloudServer) -> None:
    cases = [c for c in corpus() if "cloud" in c.where]
    assert len(cases) >= 55
    statuses: dict[int, int] = {}
    wrong: list[str] = []
    for case in cases:
        resp = requests.post(infer_url(server), data=case.body, headers=case.headers, timeout=30)
        statuses[resp.status_code] = statuses.get(resp.status_code, 0) + 1
        try:
            answer = resp.json()
        except ValueError:
            answer = {}
        if not (400 <= resp.status_code < 500 and named_in(answer, case.field)):
            wrong.append(f"{case.name}: {resp.status_code} {resp.text[:200]}")
    assert wrong == []
    assert set(statuses) <= {400, 413, 415}
    assert statuses.get(413, 0) == 3  # 2**70, 2**40 x 2**40 and the gzip bomb
    assert statuses.get(415, 0) == 1
    # Still serving, and nothing in the log but the start-up lines: no traceback, no 500.
    assert requests.get(server.url + "/v2/health/ready", timeout=5).status_code == 200
    log = server.log_tail(200_000)
    assert "Traceback" not in log and "ERROR" not in log and "answering 5" not in log


def test_raw_input_parameter_is_read_and_counted(server: CloudServer, rows: np.ndarray) -> None:
    raw = b"\x89PNG raw camera bytes"
    body, headers = encode_infer_request(
        {"input": rows[:1]}, parameters={"raw_input_b64": base64.b64encode(raw).decode()}
    )
    resp = requests.post(infer_url(server), data=body, headers=headers, timeout=10)
    assert resp.status_code == 200
    metrics = requests.get(server.url + "/metrics", timeout=5).text
    assert f'edgecascade_cloud_raw_input_bytes_total{{model="{MODEL}"}} {float(len(raw))}' in metrics


def _send_headers_only(port: int, length: int) -> tuple[int, float]:
    """POST a body's headers announcing `length` bytes but send none: the status and the time
    it took to come (a server that wants the body first never answers)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    start = time.perf_counter()
    sock.sendall(
        (
            f"POST /v2/models/{MODEL}/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {length}\r\n\r\n"
        ).encode()
    )
    head = sock.recv(4096)
    elapsed = time.perf_counter() - start
    sock.close()
    return int(head.split(b" ")[1]), elapsed


def test_big_bodies_get_413_before_they_take_the_memory(cloud_repo: Path) -> None:
    srv = CloudServer(cloud_repo, log_path=cloud_repo.parent / "big-bodies.log").start()
    try:
        assert srv.proc is not None
        pid = srv.proc.pid
        requests.post(infer_url(srv), json={"inputs": []}, timeout=5)  # warm the path
        before = vm(pid, "VmHWM")
        # 1. Announced by Content-Length: refused before a byte of the body is sent.
        status, elapsed = _send_headers_only(srv.port, 50 << 20)
        assert status == 413 and elapsed < 1.0
        # 2. A 50 MB JSON body sent whole, as ordinary clients do: they read the 413.
        values = ",".join(["0.123456"] * ((50 << 20) // 9))
        big_json = (
            '{"inputs":[{"name":"input","datatype":"FP32","shape":[1,64],"data":[' + values + "]}]}"
        ).encode()
        assert len(big_json) > 50_000_000
        start = time.perf_counter()
        resp = requests.post(
            infer_url(srv), data=big_json, headers={"Content-Type": "application/json"}, timeout=30
        )
        assert resp.status_code == 413 and resp.json()["field"] == "body"
        assert time.perf_counter() - start < 5.0
        # 3. The same, chunked (no Content-Length): refused as it streams in.
        chunks = (big_json[i : i + (1 << 20)] for i in range(0, len(big_json), 1 << 20))
        resp = requests.post(
            infer_url(srv), data=chunks, headers={"Content-Type": "application/json"}, timeout=30
        )
        assert resp.status_code == 413
        # 4. A 50 MB binary tensor.
        tensor = np.zeros((200_000, 64), np.float32)
        body, headers = encode_infer_request({"input": tensor})
        resp = requests.post(infer_url(srv), data=body, headers=headers, timeout=30)
        assert resp.status_code == 413
        # 5. Under the body limit but over the JSON limit (4 MiB): refused before parsing.
        mid = (
            '{"inputs":[{"name":"input","datatype":"FP32","shape":[1,64],"data":['
            + values[: 6 << 20]
            + "0]}]}"
        ).encode()
        resp = requests.post(
            infer_url(srv), data=mid, headers={"Content-Type": "application/json"}, timeout=30
        )
        assert resp.status_code == 413 and "JSON part" in resp.json()["error"]
        # 6. Elements over the per-request bound in a binary body under the body limit.
        body, headers = encode_infer_request({"input": np.zeros((62_600, 64), np.float32)})  # 16 MB - a bit
        resp = requests.post(infer_url(srv), data=body, headers=headers, timeout=30)
        assert resp.status_code == 413 and "elements" in resp.json()["error"]
        grown = vm(pid, "VmHWM") - before
        # The body limit is 16 MiB: at most a body and its copy were ever held.
        print(f"peak RSS grew {grown:.1f} MiB")
        assert grown < 64, f"peak RSS grew {grown:.0f} MiB"
        assert requests.get(srv.url + "/v2/health/ready", timeout=5).status_code == 200
    finally:
        srv.stop()
