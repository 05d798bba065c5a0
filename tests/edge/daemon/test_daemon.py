"""End-to-end: the daemon as a real subprocess, with a real broker and the real cloud API."""

from __future__ import annotations

import json
import signal
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
import pytest
import requests
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edgecascade.cloud.repository import seed_demo_repository
from edgecascade.shared.v2 import decode_infer_response, encode_infer_request
from edgecascade.tools.mqtt_broker import BrokerProcess, free_port
from tests.edge.daemon.support import DaemonProcess, write_profile
from tests.support.cloud_server import CloudServer


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> Iterator[CloudServer]:
    repo = seed_demo_repository(tmp_path_factory.mktemp("repo") / "models", models_dir)
    server = CloudServer(repo, debug_delay_ms=0).start()
    yield server
    server.stop()


def infer(url: str, rows: np.ndarray, request_id: str) -> requests.Response:
    body, headers = encode_infer_request({"input": rows}, request_id=request_id)
    return requests.post(url + "/v2/models/digits-edge/infer", data=body, headers=headers, timeout=10)


def test_http_api_answers_with_provenance(
    tmp_path: Path, cloud: CloudServer, broker: BrokerProcess, digits_split
) -> None:
    _, held = digits_split
    port = free_port()
    daemon = DaemonProcess(
        write_profile(
            tmp_path, cloud_url=cloud.url, broker_port=broker.port, api_port=port, api_extra="max_body_mb = 1"
        ),
        port,
        tmp_path / "d.log",
    ).start()
    try:
        labels, sources = [], []
        for start in range(0, 200, 50):
            resp = infer(daemon.url, held.features[start : start + 50], f"batch-{start}")
            assert resp.status_code == 200, resp.text
            decoded = decode_infer_response(resp.content, resp.headers)
            assert decoded.id == f"batch-{start}" and decoded.model_name == "digits-edge"
            labels += [int(v) for v in decoded.outputs["label"]]
            for prov in decoded.parameters["provenance"]:
                sources.append(prov["source"])
                assert prov["edge_model"] == "digits-edge:1.0.0"
                if prov["source"] == "cloud":
                    assert prov["escalated"] and prov["cloud_model"] == "digits-cloud:1.0.0"
        assert np.mean(np.array(labels) == held.labels[:200]) >= 0.97
        assert "cloud" in sources and sources.count("edge") > 150
        metrics = requests.get(daemon.url + "/metrics", timeout=5).text
        assert (
            'edgecascade_answers_total{degraded="false",escalated="true",model="digits-edge",'
            'model_version="1.0.0",source="cloud"}' in metrics
        )
        assert "\nedgecascade_inflight_requests 0.0\n" in metrics  # no infer call in progress while scraping
        bad = requests.post(
            daemon.url + "/v2/models/digits-edge/infer",
            data=b'{"inputs": [{"name": "input"}]}',
            headers={"Content-Type": "application/json"},
            timeout=5,
        )
        assert bad.status_code == 400 and "inputs[0]" in bad.json()["error"]
        assert requests.get(daemon.url + "/v2/models/other", timeout=5).status_code == 404
        # The infer route's edges: a named version, a wrong one, another model, the wrong method.
        body, headers = encode_infer_request({"input": held.features[:1]}, request_id="v")
        versioned = daemon.url + "/v2/models/digits-edge/versions/{}/infer"
        named = requests.post(versioned.format("1.0.0"), data=body, headers=headers, timeout=5)
        assert named.status_code == 200
        wrong = requests.post(versioned.format("9.9.9"), data=body, headers=headers, timeout=5)
        assert wrong.status_code == 404 and "9.9.9" in wrong.json()["error"]
        other = requests.post(daemon.url + "/v2/models/other/infer", data=body, headers=headers, timeout=5)
        assert other.status_code == 404 and "digits-edge" in other.json()["error"]
        not_post = requests.get(daemon.url + "/v2/models/digits-edge/infer", timeout=5)
        assert not_post.status_code == 405 and not_post.headers["allow"] == "POST"
        # An oversized body is refused, and the same keep-alive connection still answers.
        with requests.Session() as session:
            huge = session.post(
                daemon.url + "/v2/models/digits-edge/infer", data=b"x" * (2 << 20), timeout=10
            )
            assert huge.status_code == 413 and "max_body_mb" in huge.json()["error"]
            after = session.post(
                daemon.url + "/v2/models/digits-edge/infer", data=body, headers=headers, timeout=5
            )
            assert after.status_code == 200
    finally:
        daemon.stop()


@pytest.mark.parametrize("protocol", [5, 4])
def test_mqtt_request_reply(tmp_path: Path, broker: BrokerProcess, digits_split, protocol: int) -> None:
    _, held = digits_split
    port = free_port()
    daemon = DaemonProcess(
        write_profile(tmp_path, broker_port=broker.port, api_port=port), port, tmp_path / "d.log"
    )
    daemon.start()
    replies: list[mqtt.MQTTMessage] = []
    got = threading.Event()
    version = MQTTProtocolVersion.MQTTv5 if protocol == 5 else MQTTProtocolVersion.MQTTv311
    app = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"app-{protocol}", protocol=version)
    app.on_message = lambda c, u, m: (replies.append(m), got.set() if len(replies) == 3 else None)
    app.connect("127.0.0.1", broker.port)
    app.loop_start()
    try:
        app.subscribe("app/replies/#", qos=1)
        time.sleep(0.3)
        for i in range(3):
            params: dict[str, object] = {}
            props = None
            if protocol == 5:
                props = Properties(PacketTypes.PUBLISH)
                props.ResponseTopic = "app/replies/5"
                props.CorrelationData = f"corr-{i}".encode()
            else:
                params = {"reply_to": "app/replies/4", "correlation_id": f"corr-{i}"}
            request = {
                "id": f"r{i}",
                "parameters": params,
                "inputs": [
                    {"name": "input", "datatype": "FP32", "shape": [1, 64], "data": held.features[i].tolist()}
                ],
            }
            app.publish("edgecascade/t/dev-1/requests", json.dumps(request), qos=1, properties=props)
        app.publish("edgecascade/t/dev-1/requests", b"not json", qos=1)  # logged and counted, no crash
        assert got.wait(15), f"replies: {len(replies)}"
        by_corr = {}
        for msg in replies:
            body = json.loads(msg.payload)
            corr = body["parameters"]["correlation_id"]
            if protocol == 5:
                assert msg.properties.CorrelationData.decode() == corr
            by_corr[corr] = body
        for i in range(3):
            body = by_corr[f"corr-{i}"]
            assert body["id"] == f"r{i}"
            label = next(o for o in body["outputs"] if o["name"] == "label")["data"][0]
            assert int(label) == int(held.labels[i])
        assert requests.get(daemon.url + "/v2/health/ready", timeout=5).status_code == 200
    finally:
        app.loop_stop()
        daemon.stop()


def _inference_records(buffer: Path) -> list[dict[str, object]]:
    db = sqlite3.connect(buffer)
    rows = db.execute("SELECT body FROM records WHERE kind = 'inference'").fetchall()
    db.close()
    return [json.loads(body) for (body,) in rows]


def test_sigterm_finishes_in_flight_requests_and_flushes_telemetry(
    tmp_path: Path, models_dir: Path, digits_split, tmp_path_factory: pytest.TempPathFactory
) -> None:
    _, held = digits_split
    repo = seed_demo_repository(tmp_path_factory.mktemp("slow") / "models", models_dir)
    slow = CloudServer(repo, debug_delay_ms=400).start()  # every escalation takes 0.4 s
    port = free_port()  # threshold 1.0: every case is hard (int8 outputs never reach 1.0)
    profile = write_profile(tmp_path, cloud_url=slow.url, api_port=port, threshold=1.0)
    daemon = DaemonProcess(profile, port, tmp_path / "d.log")
    try:
        daemon.start()
        ids = [f"inflight-{i}-{uuid.uuid4().hex[:6]}" for i in range(8)]
        with ThreadPoolExecutor(8) as pool:
            futures = [
                pool.submit(infer, daemon.url, held.features[i : i + 1], rid) for i, rid in enumerate(ids)
            ]
            time.sleep(0.3)  # all eight are in flight, waiting on the slow cloud
            daemon.signal(signal.SIGTERM)
            responses = [f.result() for f in futures]
        assert [r.status_code for r in responses] == [200] * 8
        for r in responses:
            assert (
                decode_infer_response(r.content, r.headers).parameters["provenance"][0]["source"] == "cloud"
            )
        assert daemon.wait(20) == 0
        # Closed at the stop: the WAL is checkpointed into the file and removed, so the next
        # start has no leftover -wal to check.
        assert not (tmp_path / "dev-1" / "telemetry.sqlite3-wal").exists()
        records = _inference_records(tmp_path / "dev-1" / "telemetry.sqlite3")
        assert sorted(str(r["request_id"]) for r in records) == sorted(ids)
        assert "stopped cleanly" in (tmp_path / "d.log").read_text()
    finally:
        daemon.stop()
        slow.stop()


def test_bad_profile_fails_fast_with_a_clear_error(tmp_path: Path) -> None:
    import subprocess
    import sys

    profile = write_profile(tmp_path, extra="[api]\nmax_inflight = 0\n")
    profile.write_text(profile.read_text().replace("[api]\nport", "[apix]\nport"))
    result = subprocess.run(
        [sys.executable, "-m", "edgecascade", "agent", "run", "-c", str(profile)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"{profile}: " in result.stderr and "apix" in result.stderr


def test_backpressure_503_with_retry_after_and_bounded_memory(
    tmp_path: Path, models_dir: Path, digits_split, tmp_path_factory: pytest.TempPathFactory
) -> None:
    _, held = digits_split
    repo = seed_demo_repository(tmp_path_factory.mktemp("slow2") / "models", models_dir)
    slow = CloudServer(repo, debug_delay_ms=300).start()
    port = free_port()
    profile = write_profile(
        tmp_path, cloud_url=slow.url, api_port=port, threshold=1.0, api_extra="max_inflight = 4\nworkers = 4"
    )
    daemon = DaemonProcess(profile, port, tmp_path / "d.log")
    try:
        daemon.start()
        rss_before = daemon.rss_mib()
        with ThreadPoolExecutor(32) as pool:
            responses = list(
                pool.map(
                    lambda i: infer(daemon.url, held.features[i % 100 : i % 100 + 1], f"bp-{i}"), range(200)
                )
            )
        codes = [r.status_code for r in responses]
        assert codes.count(503) > 0 and codes.count(200) >= 4 and set(codes) <= {200, 503}
        busy = next(r for r in responses if r.status_code == 503)
        assert busy.headers["Retry-After"] == "1" and "busy" in busy.json()["error"]
        assert daemon.rss_mib() < rss_before + 30
        metrics = requests.get(daemon.url + "/metrics", timeout=5).text
        rejected = float(
            next(
                line.split()[-1]
                for line in metrics.splitlines()
                if line.startswith('edgecascade_rejected_total{frontend="http"}')
            )
        )
        assert rejected == codes.count(503)
    finally:
        daemon.stop()
        slow.stop()


def test_video_file_source_publishes_events(tmp_path: Path, broker: BrokerProcess, digits_split) -> None:
    from edgecascade.tools.make_video import write_digits_video

    _, held = digits_split
    video = tmp_path / "digits.avi"
    write_digits_video(video, held.images[:60], held.labels[:60], fps=10, scale=8)
    port = free_port()
    camera = f'[camera]\nenabled = true\nsource = "{video}"\nfps = 10\n'
    daemon = DaemonProcess(
        write_profile(tmp_path, broker_port=broker.port, api_port=port, extra=camera),
        port,
        tmp_path / "d.log",
    )
    events: list[dict[str, object]] = []
    done = threading.Event()
    app = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id="events-app", protocol=MQTTProtocolVersion.MQTTv5
    )

    def on_message(client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        events.append(json.loads(msg.payload))
        if len(events) == 60:
            done.set()

    app.on_message = on_message
    app.connect("127.0.0.1", broker.port)
    app.subscribe("edgecascade/t/dev-1/events", qos=1)
    app.loop_start()
    try:
        time.sleep(0.3)
        daemon.start()
        assert done.wait(30), f"{len(events)} events"
        assert [e["frame"] for e in events] == list(range(60))
        accuracy = np.mean(
            [int(str(e["label"])) == int(label) for e, label in zip(events, held.labels[:60], strict=True)]
        )
        assert accuracy >= 0.9 and {e["device"] for e in events} == {"dev-1"}
        metrics = requests.get(daemon.url + "/metrics", timeout=5).text
        assert "\nedgecascade_camera_frames_processed_total 60.0\n" in metrics
    finally:
        app.loop_stop()
        daemon.stop()


def test_a_second_signal_forces_the_exit(
    tmp_path: Path, models_dir: Path, digits_split, tmp_path_factory: pytest.TempPathFactory
) -> None:
    _, held = digits_split
    repo = seed_demo_repository(tmp_path_factory.mktemp("slow3") / "models", models_dir)
    slow = CloudServer(repo, debug_delay_ms=2500).start()
    port = free_port()
    daemon = DaemonProcess(
        write_profile(tmp_path, cloud_url=slow.url, api_port=port, threshold=1.0), port, tmp_path / "d.log"
    )
    try:
        daemon.start()
        with ThreadPoolExecutor(2) as pool:
            futures = [pool.submit(infer, daemon.url, held.features[i : i + 1], f"f{i}") for i in range(2)]
            time.sleep(0.3)
            daemon.signal(signal.SIGTERM)
            time.sleep(0.2)
            started = time.monotonic()
            daemon.signal(signal.SIGTERM)
            assert daemon.wait(5) == 3  # EXIT_FORCED, without waiting for the slow cloud
            assert time.monotonic() - started < 2.0
            for f in futures:
                with pytest.raises(requests.ConnectionError):
                    f.result()
        assert "forced exit: second SIGTERM" in (tmp_path / "d.log").read_text()
    finally:
        daemon.stop()
        slow.stop()


def _start_upload(port: int, length: int, sent: int) -> socket.socket:
    """An infer request declaring `length` bytes of body, of which `sent` are sent now."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(
        b"POST /v2/models/digits-edge/infer HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {length}\r\n\r\n".encode()
        + b" " * sent
    )
    return sock


def _status(sock: socket.socket) -> tuple[int, str]:
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(65536)
        assert chunk, "closed without a reply"
        head += chunk
    return int(head.split()[1]), head.decode("latin-1")


def test_request_bodies_in_memory_are_bounded_across_connections(tmp_path: Path) -> None:
    """Many clients uploading big bodies at once: bodies past api.max_buffered_mb get 503 +
    Retry-After before they are read, one declared over api.max_body_mb gets 413 unread, and
    the budget is given back when a request is answered."""
    mib = 1 << 20
    port = free_port()
    profile = write_profile(tmp_path, api_port=port, api_extra="max_body_mb = 4\nmax_buffered_mb = 8")
    daemon = DaemonProcess(profile, port, tmp_path / "d.log").start()
    uploads: list[socket.socket] = []
    try:
        rss_before = daemon.rss_mib()
        admitted = [_start_upload(port, int(3.5 * mib), 3 * mib) for _ in range(2)]  # 7 of 8 MiB
        time.sleep(0.5)
        uploads = [_start_upload(port, int(3.5 * mib), 0) for _ in range(30)]
        for sock in uploads:
            status, head = _status(sock)
            assert status == 503 and "retry-after: 1" in head.lower(), head
        too_big = _start_upload(port, 5 * mib, 0)
        status, head = _status(too_big)
        assert status == 413, head
        assert daemon.rss_mib() < rss_before + 30
        for sock in admitted:  # the admitted ones finish (not JSON: 400) and give the budget back
            sock.sendall(b" " * (int(3.5 * mib) - 3 * mib))
            assert _status(sock)[0] == 400
        again = _start_upload(port, int(3.5 * mib), int(3.5 * mib))
        assert _status(again)[0] == 400  # admitted and answered, not 503
        uploads += [*admitted, too_big, again]
        metrics = requests.get(daemon.url + "/metrics", timeout=5).text
        assert 'edgecascade_rejected_total{frontend="http"} 30' in metrics
    finally:
        for sock in uploads:
            sock.close()
        daemon.stop()
