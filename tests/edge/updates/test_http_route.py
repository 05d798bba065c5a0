"""The HTTP(S) update route: cloud.artifacts' Range route on a real uvicorn server, a device that
downloads through a real TCP proxy which is cut mid-download, and a delta over HTTP."""

from __future__ import annotations

import hashlib
import http.client
import os
from pathlib import Path

import requests
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edgecascade.cloud.artifacts import delta_file_name, place_artifact
from edgecascade.cloud.fleet.manifest_builder import build_manifest
from edgecascade.tools.mqtt_broker import BrokerProcess
from tests.edge.updates.artifact_server import ArtifactServer
from tests.edge.updates.helpers import FLEET, MODELS, Device, make_profile, start_fleet, wait_until
from tests.support.faulty_proxy import FaultyProxy


def _raw_get(port: int, path: str) -> tuple[int, bytes]:
    """GET with the path sent exactly as given (requests/urllib3 would normalise dot segments)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def test_range_route_answers_ranges_416_head_and_refuses_traversal(tmp_path: Path) -> None:
    root = tmp_path / "artifacts"
    data = os.urandom(100_000)
    place_artifact(root, "m/1.0.0/model.onnx", data)
    secret = b"fleet signing key - must never be served"
    (tmp_path / "secret").write_bytes(secret)
    (root / "m" / "1.0.0" / "link.onnx").symlink_to(tmp_path / "secret")
    etag = f'"{hashlib.sha256(data).hexdigest()}"'
    with ArtifactServer(root) as server:
        url = f"{server.url}/artifacts/m/1.0.0/model.onnx"
        full = requests.get(url, timeout=5)
        assert full.status_code == 200 and full.content == data
        assert full.headers["ETag"] == etag and full.headers["Accept-Ranges"] == "bytes"

        part = requests.get(url, headers={"Range": "bytes=10-19"}, timeout=5)
        assert part.status_code == 206 and part.content == data[10:20]
        assert part.headers["Content-Range"] == "bytes 10-19/100000"
        tail = requests.get(url, headers={"Range": "bytes=99990-"}, timeout=5)
        assert tail.status_code == 206 and tail.content == data[99990:]
        suffix = requests.get(url, headers={"Range": "bytes=-7"}, timeout=5)
        assert suffix.status_code == 206 and suffix.content == data[-7:]
        clamped = requests.get(url, headers={"Range": "bytes=99999-200000"}, timeout=5)
        assert clamped.status_code == 206 and clamped.content == data[-1:]

        beyond = requests.get(url, headers={"Range": "bytes=100000-"}, timeout=5)
        assert beyond.status_code == 416 and beyond.headers["Content-Range"] == "bytes */100000"
        # Malformed or multi-range headers are ignored (RFC 9110): the whole file.
        assert requests.get(url, headers={"Range": "bytes=5-1"}, timeout=5).content == data
        assert requests.get(url, headers={"Range": "bytes=0-1,5-6"}, timeout=5).status_code == 200
        # If-Range with another ETag: the file changed, so send it whole.
        stale = requests.get(url, headers={"Range": "bytes=0-9", "If-Range": '"old"'}, timeout=5)
        assert stale.status_code == 200 and stale.content == data
        fresh = requests.get(url, headers={"Range": "bytes=0-9", "If-Range": etag}, timeout=5)
        assert fresh.status_code == 206 and fresh.content == data[:10]

        head = requests.head(url, timeout=5)
        assert head.status_code == 200 and head.headers["Content-Length"] == "100000" and head.content == b""
        assert (
            requests.head(url, headers={"Range": "bytes=0-99"}, timeout=5).headers["Content-Length"] == "100"
        )

        for path in (
            "/artifacts/../secret",
            "/artifacts/m/../../secret",
            "/artifacts/%2e%2e/%2e%2e/secret",
            "/artifacts/m/1.0.0/..%2F..%2F..%2Fsecret",
            "/artifacts/m/%2e%2e/..%2Fsecret",
            "/artifacts/m/1.0.0/.hidden",
            "/artifacts/m/1.0.0/link.onnx",  # a symlink out of the folder
            "/artifacts/m/1.0.0/missing.onnx",
        ):
            status, body = _raw_get(server.port, path)
            assert status == 404, path
            assert secret not in body
        assert [e.status for e in server.served.entries()].count(416) == 1


def test_device_resumes_http_download_with_a_range_after_a_cut(
    broker: BrokerProcess, tmp_path: Path, signing_key: Ed25519PrivateKey, model_v2: Path
) -> None:
    """The proxy holds every response 0.15 s; after three ranges were asked for, it is stopped
    (every open connection cut, the response in flight lost) and started again 0.5 s later."""
    chunk, range_bytes = 2048, 4096
    profile = make_profile(
        tmp_path, "d1", broker.port, signing_key.public_key(), updates={"http_range_kb": range_bytes // 1024}
    )
    device = Device.start(profile)
    fleet = start_fleet(broker.port, signing_key, tmp_path / "fleet")
    with ArtifactServer(tmp_path / "artifacts") as server, FaultyProxy(server.port) as proxy:
        proxy.set_mode("delay", delay_s=0.15)
        fleet.artifacts_dir = server.root
        try:
            wait_until(lambda: "d1" in fleet.board.statuses(), what="status")
            manifest, payloads = build_manifest(
                model_v2, fleet=FLEET, target="device:d1", route="http", base_url=proxy.url, chunk_size=chunk
            )
            rel = payloads[0].http_path
            size = manifest.artifact.size_bytes
            signed, _ = fleet.push(manifest, payloads)
            wait_until(lambda: len(server.served.entries(rel)) >= 3, what="three range requests")
            proxy.stop()
            cut_at = len(server.served.entries(rel))
            assert device.version == "1.0.0"  # mid-download
            wait_until(lambda: getattr(device.updater.transports.made("http"), "retries", 0) >= 1, 5)
            proxy.start()

            st = fleet.board.wait_for(signed.push_id, ["d1"], 30)["d1"]
            assert st is not None and st.state == "active", st
            assert device.version == "1.1.0"
            assert device.slot.current.path.read_bytes() == model_v2.read_bytes()

            gets = [e for e in server.served.entries(rel) if e.method == "GET"]
            assert all(e.status == 206 for e in gets)
            before, after = gets[:cut_at], gets[cut_at:]
            assert before[0].start == 0 and after
            # Resumed with a Range from where it stopped: nothing before the range in flight at
            # the cut is asked for again, and the rest follows in order to the end.
            assert after[0].start > 0 and after[0].start >= before[-1].start
            assert after[0].start % chunk == 0
            assert all(a.end == b.start for a, b in zip(after, after[1:], strict=False))
            assert after[-1].end == size
            assert all(e.end - e.start <= range_bytes for e in gets)
            served = sum(e.end - e.start for e in gets)
            assert size <= served <= size + range_bytes  # at most the cut range twice
        finally:
            device.stop()
            fleet.connection.stop()


def test_delta_over_http_fetches_only_the_delta(
    broker: BrokerProcess, tmp_path: Path, signing_key: Ed25519PrivateKey, model_v2: Path
) -> None:
    device = Device.start(make_profile(tmp_path, "d1", broker.port, signing_key.public_key()))
    fleet = start_fleet(broker.port, signing_key, tmp_path / "fleet")
    with ArtifactServer(tmp_path / "artifacts") as server:
        fleet.artifacts_dir = server.root
        try:
            wait_until(lambda: "d1" in fleet.board.statuses(), what="status")
            manifest, payloads = build_manifest(
                model_v2,
                fleet=FLEET,
                target="device:d1",
                route="http",
                base_url=server.url,
                delta_base=MODELS / "digits_edge_fp32.onnx",
                chunk_size=4096,
            )
            assert manifest.delta is not None and manifest.delta.blob.url is not None
            delta_rel = f"digits-edge/1.1.0/{delta_file_name(model_v2.name, '1.0.0')}"
            assert manifest.delta.blob.url.endswith(delta_rel)
            signed, _ = fleet.push(manifest, payloads)
            st = fleet.board.wait_for(signed.push_id, ["d1"], 30)["d1"]
            assert st is not None and st.state == "active", st
            assert device.slot.current.path.read_bytes() == model_v2.read_bytes()
            # Both files were placed, only the delta was fetched, and every byte of it once.
            assert (server.root / delta_rel).is_file() and (server.root / payloads[0].http_path).is_file()
            fetched = {e.path for e in server.served.entries()}
            assert fetched == {delta_rel}
            assert server.served.bytes_sent == manifest.delta.blob.size_bytes < manifest.artifact.size_bytes
            assert device.updater.pipeline.bytes_downloaded == manifest.delta.blob.size_bytes
        finally:
            device.stop()
            fleet.connection.stop()
