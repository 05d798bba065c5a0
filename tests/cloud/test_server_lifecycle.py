"""Worker processes, graceful shutdown, overload, restart, start-up errors, and the faulty
proxy that device-side fault tests put between a client and the real server."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import requests

from edgecascade.cli import main
from edgecascade.shared.errors import ProtocolError
from edgecascade.shared.v2 import decode_infer_response, encode_infer_request
from tests.support.cloud_server import CloudServer
from tests.support.faulty_proxy import FaultyProxy

ROW = {"input": np.full((1, 64), 0.5, np.float32)}


def post(url: str, model: str = "digits-cloud", timeout: float = 10) -> requests.Response:
    body, headers = encode_infer_request(ROW)
    return requests.post(f"{url}/v2/models/{model}/infer", data=body, headers=headers, timeout=timeout)


@pytest.fixture(scope="module")
def slow_server(cloud_repo: Path) -> Iterator[CloudServer]:
    """One worker, no auth, every model call slowed to 300 ms."""
    srv = CloudServer(cloud_repo, debug_delay_ms=300).start()
    try:
        yield srv
    finally:
        srv.stop()


def test_overload_answers_503_with_retry_after(slow_server: CloudServer) -> None:
    # digits-tiny-queue: one request running (300 ms) and one waiting; the rest are refused.
    with ThreadPoolExecutor(5) as pool:
        responses = list(pool.map(lambda _: post(slow_server.url, "digits-tiny-queue"), range(5)))
    codes = sorted(r.status_code for r in responses)
    assert codes.count(200) in (1, 2), codes
    assert codes.count(503) == 5 - codes.count(200)
    refused = next(r for r in responses if r.status_code == 503)
    assert refused.headers["Retry-After"] == "1"
    assert "overloaded" in refused.json()["error"]


def test_faulty_proxy_modes(slow_server: CloudServer) -> None:
    with FaultyProxy(slow_server.port) as proxy:
        ok = post(proxy.url)
        assert ok.status_code == 200
        assert decode_infer_response(ok.content, ok.headers).model_name == "digits-cloud"

        proxy.set_mode("delay", 0.5)
        start = time.monotonic()
        assert post(proxy.url).status_code == 200
        assert time.monotonic() - start >= 0.5 + 0.3

        proxy.set_mode("http_500")
        failed = post(proxy.url)
        assert failed.status_code == 500 and "error" in failed.json()

        proxy.set_mode("garbage")
        garbage = post(proxy.url)
        assert garbage.status_code == 200
        with pytest.raises(ProtocolError):
            decode_infer_response(garbage.content, garbage.headers)

        proxy.set_mode("reset")
        with pytest.raises(requests.ConnectionError):
            post(proxy.url)

        proxy.set_mode("blackhole")
        with pytest.raises(requests.ReadTimeout):
            post(proxy.url, timeout=0.3)

        proxy.set_mode("pass")
        assert post(proxy.url).status_code == 200


def test_restart_keeps_the_port(slow_server: CloudServer) -> None:
    url = slow_server.url
    assert slow_server.stop() == 0
    with pytest.raises(requests.ConnectionError):
        requests.get(url + "/v2/health/live", timeout=1)
    slow_server.start()
    assert slow_server.url == url
    assert post(url).status_code == 200


def test_workers_share_metrics_and_sigterm_finishes_in_flight_requests(cloud_repo: Path) -> None:
    srv = CloudServer(cloud_repo, workers=2, debug_delay_ms=400).start()
    try:
        with ThreadPoolExecutor(4) as pool:
            assert [r.status_code for r in pool.map(lambda _: post(srv.url), range(4))] == [200] * 4
        text = requests.get(srv.url + "/metrics", timeout=5).text
        found = re.search(r'edgecascade_cloud_inferences_total\{model="digits-cloud"\} ([0-9.]+)', text)
        assert found and float(found.group(1)) == 4.0  # summed over both workers

        with ThreadPoolExecutor(8) as pool:
            futures = [pool.submit(post, srv.url) for _ in range(8)]
            time.sleep(0.2)  # all eight are now inside the 400 ms model call
            srv.terminate()
            codes = [f.result().status_code for f in futures]
        assert codes == [200] * 8
        assert srv.proc is not None
        assert srv.proc.wait(15) == 0
        with pytest.raises(requests.ConnectionError):
            requests.get(srv.url + "/v2/health/live", timeout=1)
    finally:
        srv.stop()


def test_serve_refuses_bad_setups_before_binding(
    tmp_path: Path, cloud_repo: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("EDGECASCADE_SERVE__TOKENS", raising=False)
    assert main(["cloud", "serve", "--repository", str(tmp_path / "none"), "--no-auth"]) == 1
    assert "model repository folder not found" in capsys.readouterr().err
    assert main(["cloud", "serve", "--repository", str(cloud_repo)]) == 1
    assert "no device tokens" in capsys.readouterr().err
    assert main(["cloud", "serve", "--repository", str(cloud_repo), "--port", "http"]) == 1
    assert "--port" in capsys.readouterr().err
    bad = tmp_path / "repo" / "m"
    (bad / "1").mkdir(parents=True)
    (bad / "1" / "model.onnx").write_bytes(b"x")
    (bad / "model.toml").write_text("max_batch_size = 0\n")
    assert main(["cloud", "serve", "--repository", str(tmp_path / "repo"), "--no-auth"]) == 1
    err = capsys.readouterr().err
    assert "model.toml: max_batch_size" in err
