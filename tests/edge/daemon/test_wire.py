"""The agent's wire, over the real daemon: malformed requests over HTTP and over a real
Mosquitto, strict datatypes, non-finite input, compression, and images that would take the
memory or the event loop."""

from __future__ import annotations

import gzip
import json
import re
import sqlite3
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import paho.mqtt.client as mqtt
import pytest
import requests
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edgecascade.shared.v2 import decode_infer_response, encode_infer_request
from edgecascade.tools.mqtt_broker import BrokerProcess, free_port
from tests.edge.daemon.support import DaemonProcess, write_profile
from tests.support.images import blank_png
from tests.support.malformed_requests import corpus, named_in

INFER = "/v2/models/digits-edge/infer"
REQUESTS_TOPIC = "edgecascade/t/dev-1/requests"


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    tmp = tmp_path_factory.mktemp("wire")
    port = free_port()
    proc = DaemonProcess(write_profile(tmp, api_port=port), port, tmp / "d.log").start()
    try:
        yield proc
    finally:
        proc.stop()


def metric(daemon: DaemonProcess, line_start: str) -> float:
    text = requests.get(daemon.url + "/metrics", timeout=5).text
    found = [ln for ln in text.splitlines() if ln.startswith(line_start)]
    return float(found[0].split()[-1]) if found else 0.0


def post(daemon: DaemonProcess, body: bytes, headers: dict[str, str]) -> requests.Response:
    return requests.post(daemon.url + INFER, data=body, headers=headers, timeout=30)


def image_request(*images: bytes) -> tuple[bytes, dict[str, str]]:
    return encode_infer_request({"image": np.array(list(images), dtype=object)})


def test_every_malformed_request_gets_a_4xx_naming_the_field(daemon: DaemonProcess) -> None:
    cases = [c for c in corpus() if "agent" in c.where]
    assert len(cases) >= 55
    bad_before = metric(daemon, 'edgecascade_bad_requests_total{frontend="http"}')
    wrong: list[str] = []
    statuses: dict[int, int] = {}
    for case in cases:
        resp = post(daemon, case.body, case.headers)
        statuses[resp.status_code] = statuses.get(resp.status_code, 0) + 1
        try:
            answer = resp.json()
        except ValueError:
            answer = {}
        if not (400 <= resp.status_code < 500 and named_in(answer, case.field)):
            wrong.append(f"{case.name}: {resp.status_code} {resp.text[:200]}")
    assert wrong == [], wrong
    assert set(statuses) <= {400, 413, 415}
    assert metric(daemon, 'edgecascade_bad_requests_total{frontend="http"}') - bad_before == len(cases)
    assert requests.get(daemon.url + "/v2/health/ready", timeout=5).status_code == 200
    log = daemon.log.read_text()
    assert "Traceback" not in log and "ERROR" not in log


def test_a_large_json_body_is_refused_before_it_is_parsed(daemon: DaemonProcess) -> None:
    assert daemon.proc is not None
    status = Path(f"/proc/{daemon.proc.pid}/status")

    def peak() -> float:
        return (
            next(int(ln.split()[1]) for ln in status.read_text().splitlines() if ln.startswith("VmHWM"))
            / 1024
        )

    before = peak()
    values = ",".join(["0.5"] * 3_000_000)  # 12 MB: under max_body_mb (16), over max_json_mb (4)
    body = ('{"inputs":[{"name":"input","datatype":"FP32","shape":[1,64],"data":[' + values + "]}]}").encode()
    resp = post(daemon, body, {"Content-Type": "application/json"})
    assert resp.status_code == 413 and "JSON part" in resp.json()["error"]
    assert peak() - before < 40  # the body and its copy, never ~100 MB of parsed numbers


def test_metadata_uses_the_protocol_platform_name(daemon: DaemonProcess) -> None:
    meta = requests.get(daemon.url + "/v2/models/digits-edge", timeout=5).json()
    assert meta["platform"] == "tensorflow_tflite"
    assert [{k: t[k] for k in ("name", "datatype", "shape")} for t in meta["inputs"]] == [
        {"name": "input", "datatype": "FP32", "shape": [-1, 64]}
    ]
    assert [o["name"] for o in meta["outputs"]][:5] == [
        "label",
        "class_index",
        "confidence",
        "probabilities",
        "source",
    ]
    assert meta["outputs"][3]["shape"] == [-1, 10]


@pytest.mark.parametrize(
    ("datatype", "dtype"), [("FP64", np.float64), ("INT32", np.int32), ("UINT8", np.uint8)]
)
def test_a_datatype_other_than_fp32_gets_400_naming_both(
    daemon: DaemonProcess, digits_split, datatype: str, dtype: type
) -> None:
    row = digits_split[1].features[:1]
    body, headers = encode_infer_request({"input": row.astype(dtype)})
    resp = post(daemon, body, headers)
    assert resp.status_code == 400
    assert resp.json()["field"] == "inputs[0].datatype"
    assert datatype in resp.json()["error"] and "FP32" in resp.json()["error"]
    assert "api.convert_datatypes" in resp.json()["error"]


def test_conversion_where_the_profile_allows_it(tmp_path: Path, digits_split) -> None:
    port = free_port()
    profile = write_profile(tmp_path, api_port=port, api_extra="convert_datatypes = true")
    proc = DaemonProcess(profile, port, tmp_path / "d.log").start()
    try:
        held = digits_split[1]
        body, headers = encode_infer_request({"input": held.features[:5].astype(np.float64)})
        resp = post(proc, body, headers)
        assert resp.status_code == 200
        labels = decode_infer_response(resp.content, resp.headers).outputs["class_index"].tolist()
        body32, headers32 = encode_infer_request({"input": held.features[:5].astype(np.float32)})
        resp32 = post(proc, body32, headers32)
        same = decode_infer_response(resp32.content, resp32.headers)
        assert labels == same.outputs["class_index"].tolist()
    finally:
        proc.stop()


def _inference_records(buffer: Path) -> list[str]:
    db = sqlite3.connect(buffer)
    rows = db.execute("SELECT body FROM records WHERE kind = 'inference'").fetchall()
    db.close()
    return [body for (body,) in rows]


def test_non_finite_input_gets_400_and_never_reaches_telemetry(tmp_path: Path, digits_split) -> None:
    port = free_port()
    proc = DaemonProcess(write_profile(tmp_path, api_port=port), port, tmp_path / "d.log").start()
    row = digits_split[1].features[:1].astype(np.float32)
    try:
        sent = 0
        for bad in (np.nan, np.inf, -np.inf):
            for binary in (True, False):
                x = row.copy()
                x[0, 7] = bad
                if binary:
                    body, headers = encode_infer_request({"input": x})
                else:  # Python's json writes NaN and Infinity literals (orjson would write null)
                    tensor = {"name": "input", "datatype": "FP32", "shape": [1, 64], "data": x[0].tolist()}
                    body, headers = json.dumps({"inputs": [tensor]}).encode(), {}
                resp = post(proc, body, headers)
                assert resp.status_code == 400, resp.text
                assert "non-finite" in resp.json()["error"] and "inputs[0].data" in resp.json()["error"]
                sent += 1
        assert sent == 6
        ok_body, ok_headers = encode_infer_request({"input": row}, request_id="finite")
        assert post(proc, ok_body, ok_headers).status_code == 200
    finally:
        proc.stop()
    records = _inference_records(tmp_path / "dev-1" / "telemetry.sqlite3")
    assert len(records) == 1 and json.loads(records[0])["request_id"] == "finite"
    assert not re.search(r"NaN|Infinity", records[0])


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_compressed_requests_and_responses(daemon: DaemonProcess, digits_split, encoding: str) -> None:
    import zlib

    body, headers = encode_infer_request(
        {"input": digits_split[1].features[:4]}, binary=False, binary_outputs=False
    )
    packed = gzip.compress(body) if encoding == "gzip" else zlib.compress(body)
    resp = requests.post(
        daemon.url + INFER,
        data=packed,
        headers={**headers, "Content-Encoding": encoding, "Accept-Encoding": encoding},
        timeout=10,
        stream=True,
    )
    raw = resp.raw.read()
    assert resp.status_code == 200 and resp.headers["Content-Encoding"] == encoding
    text = gzip.decompress(raw) if encoding == "gzip" else zlib.decompress(raw)
    names = [o["name"] for o in json.loads(text)["outputs"]]
    assert names[:5] == ["label", "class_index", "confidence", "probabilities", "source"]


def test_a_huge_declared_image_is_refused_from_its_header(daemon: DaemonProcess) -> None:
    png = blank_png(20000, 20000)
    assert len(png) < 500_000
    assert daemon.proc is not None
    hwm = Path(f"/proc/{daemon.proc.pid}/status")

    def peak() -> float:
        return (
            next(int(ln.split()[1]) for ln in hwm.read_text().splitlines() if ln.startswith("VmHWM")) / 1024
        )

    before = peak()
    body, headers = image_request(png)
    start = time.perf_counter()
    resp = post(daemon, body, headers)
    elapsed = time.perf_counter() - start
    assert resp.status_code == 400
    assert "20000x20000" in resp.json()["error"] and "api.max_image_pixels" in resp.json()["error"]
    assert elapsed < 0.5
    assert peak() - before < 20
    # Truncated, garbage, and a real small image.
    ok, small = cv2.imencode(".png", (np.arange(64, dtype=np.uint8).reshape(8, 8) * 4))
    assert ok
    for broken, words in (
        (small.tobytes()[:40], "could not be decoded"),
        (b"\x89PNG\r\n\x1a\n garbage", "not a decodable image"),
        (b"GIF89a", "not a decodable image"),
        (np.random.default_rng(0).bytes(3000), "not a decodable image"),
    ):
        resp = post(daemon, *image_request(broken))
        assert resp.status_code == 400 and words in resp.json()["error"], resp.text
    resp = post(daemon, *image_request(small.tobytes()))
    assert resp.status_code == 200


def test_image_decoding_never_stalls_the_event_loop(tmp_path: Path) -> None:
    port = free_port()
    profile = write_profile(tmp_path, api_port=port, api_extra="max_image_pixels = 40000000\nworkers = 2")
    proc = DaemonProcess(profile, port, tmp_path / "d.log").start()
    try:
        big = blank_png(6000, 6000)  # 36 M pixels: ~0.4 s to decode here
        body, headers = image_request(big)
        gaps: list[float] = []
        done = threading.Event()

        def probe() -> None:
            with requests.Session() as session:
                while not done.is_set():
                    start = time.perf_counter()
                    assert session.get(proc.url + "/v2/health/live", timeout=5).status_code == 200
                    gaps.append(time.perf_counter() - start)
                    time.sleep(0.005)

        prober = threading.Thread(target=probe)
        prober.start()
        time.sleep(0.2)
        start = time.perf_counter()
        codes: list[int] = []
        with ThreadPoolExecutor(2) as pool:
            # Batches of 4 until the decodes have kept the daemon busy long enough to tell
            # (a fast, quiet machine decodes one in under 0.1 s).
            while time.perf_counter() - start < 0.6 and len(codes) < 32:
                codes += [r.status_code for r in pool.map(lambda _: post(proc, body, headers), range(4))]
        decoding = time.perf_counter() - start
        done.set()
        prober.join()
        assert codes == [200] * len(codes)
        assert decoding > 0.5  # the decodes really took time
        assert max(gaps) < 0.15, f"health stalled {max(gaps):.3f} s while decoding for {decoding:.2f} s"
    finally:
        proc.stop()


def test_every_malformed_mqtt_request_gets_a_reply_or_a_counted_log_line(
    tmp_path: Path, broker: BrokerProcess
) -> None:
    port = free_port()
    # Room for the whole burst: this test is about malformed requests, not backpressure (503).
    profile = write_profile(tmp_path, broker_port=broker.port, api_port=port, api_extra="max_inflight = 256")
    proc = DaemonProcess(profile, port, tmp_path / "d.log").start()
    cases = [c for c in corpus() if "agent" in c.where and c.json_only]
    assert len(cases) >= 40
    replies: dict[str, dict[str, object]] = {}
    lock = threading.Lock()

    def on_message(client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        with lock:
            answer = json.loads(msg.payload)
            replies[str(answer.get("correlation_id"))] = answer

    app = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="fuzz-app", protocol=MQTTProtocolVersion.MQTTv5)
    app.on_message = on_message
    app.connect("127.0.0.1", broker.port)
    app.loop_start()
    try:
        app.subscribe("app/replies/#", qos=1)
        time.sleep(0.3)
        for i, case in enumerate(cases):
            props = Properties(PacketTypes.PUBLISH)
            props.ResponseTopic = "app/replies/fuzz"
            props.CorrelationData = f"c{i}".encode()
            app.publish(REQUESTS_TOPIC, case.body, qos=1, properties=props)
        # MQTT 3.1.1 style: the reply topic as a parameter of a request the decoder refuses.
        by_param = {
            "parameters": {"reply_to": "app/replies/param", "correlation_id": "p1"},
            "inputs": [{"name": "input", "datatype": "FP32", "shape": [0, 9223372036854775807], "data": []}],
        }
        app.publish(REQUESTS_TOPIC, json.dumps(by_param), qos=1)
        # No reply topic at all: these cannot be answered, only counted and logged.
        for payload in (
            b"not json",
            b"[]",
            b'{"inputs": []}',
            json.dumps(
                {"inputs": [{"name": "input", "datatype": "FP32", "shape": [], "data": [1.0]}]}
            ).encode(),
        ):
            app.publish(REQUESTS_TOPIC, payload, qos=1)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(replies) < len(cases) + 1:
            time.sleep(0.05)
        assert len(replies) == len(cases) + 1
        wrong = []
        for i, case in enumerate(cases):
            answer = replies[f"c{i}"]
            status = answer.get("status")
            if not (isinstance(status, int) and 400 <= status < 500 and named_in(answer, case.field)):
                wrong.append(f"{case.name}: {answer}")
            if answer.get("correlation_id") != f"c{i}":
                wrong.append(f"{case.name}: correlation {answer.get('correlation_id')}")
        assert wrong == [], wrong
        assert replies["p1"]["status"] == 400 and replies["p1"]["field"] == "inputs[0].shape"
        time.sleep(0.5)
        log = proc.log.read_text()
        unanswerable = re.findall(r"names no reply topic .*not answered \((\d+) so far\)", log)
        assert unanswerable == ["1", "2", "3", "4"]
        assert "Traceback" not in log and "ERROR" not in log
        bad = metric(proc, 'edgecascade_bad_requests_total{frontend="mqtt"}')
        assert bad == len(cases) + 1 + 4
        assert requests.get(proc.url + "/v2/health/ready", timeout=5).status_code == 200
    finally:
        app.loop_stop()
        proc.stop()


def test_raw_input_sent_by_the_agent_is_read_by_the_cloud(
    tmp_path: Path, models_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    from edgecascade.cloud.repository import seed_demo_repository
    from tests.support.cloud_server import CloudServer

    repo = seed_demo_repository(tmp_path_factory.mktemp("raw") / "models", models_dir)
    cloud = CloudServer(repo).start()
    port = free_port()  # threshold 1.0: every case escalates; the last section is [cloud]
    profile = write_profile(
        tmp_path, cloud_url=cloud.url, api_port=port, threshold=1.0, extra="send_raw_input = true\n"
    )
    proc = DaemonProcess(profile, port, tmp_path / "d.log")
    try:
        proc.start()
        ok, png = cv2.imencode(".png", np.arange(64, dtype=np.uint8).reshape(8, 8) * 4)
        assert ok
        resp = post(proc, *image_request(png.tobytes()))
        assert resp.status_code == 200
        assert (
            decode_infer_response(resp.content, resp.headers).parameters["provenance"][0]["source"] == "cloud"
        )
        metrics = requests.get(cloud.url + "/metrics", timeout=5).text
        assert (
            f'edgecascade_cloud_raw_input_bytes_total{{model="digits-cloud"}} {float(len(png.tobytes()))}'
            in metrics
        )
    finally:
        proc.stop()
        cloud.stop()


def test_every_mqtt_request_is_answered_also_when_the_agent_is_busy(
    tmp_path: Path, broker: BrokerProcess, digits_split
) -> None:
    port = free_port()
    profile = write_profile(tmp_path, broker_port=broker.port, api_port=port, api_extra="max_inflight = 1")
    proc = DaemonProcess(profile, port, tmp_path / "d.log").start()
    replies: dict[str, dict[str, object]] = {}
    lock = threading.Lock()

    def on_message(client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        answer = json.loads(msg.payload)
        corr = answer.get("correlation_id") or answer.get("parameters", {}).get("correlation_id")
        with lock:
            replies[str(corr)] = answer

    app = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id="busy-app", protocol=MQTTProtocolVersion.MQTTv311
    )
    app.on_message = on_message
    app.connect("127.0.0.1", broker.port)
    app.loop_start()
    try:
        app.subscribe("app/replies/#", qos=1)
        time.sleep(0.3)
        row = digits_split[1].features[0].tolist()
        for i in range(40):
            request = {
                "parameters": {"reply_to": "app/replies/busy", "correlation_id": f"b{i}"},
                "inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 64], "data": row}],
            }
            app.publish(REQUESTS_TOPIC, json.dumps(request), qos=1)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(replies) < 40:
            time.sleep(0.05)
        assert sorted(replies) == sorted(f"b{i}" for i in range(40))
        busy = [r for r in replies.values() if r.get("status") == 503]
        answered = [r for r in replies.values() if "outputs" in r]
        assert len(busy) + len(answered) == 40 and answered
        assert all("busy" in str(r["error"]) for r in busy)
    finally:
        app.loop_stop()
        proc.stop()


@pytest.mark.parametrize("compression", [None, "gzip"])
@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_tritonclient_talks_to_the_agents_own_http_server(
    daemon: DaemonProcess, digits_split, binary: bool, compression: str | None
) -> None:
    """The official client, with its keep-alive connection pool, against the local API: the
    same calls an application makes to the cloud work on the device."""
    import tritonclient.http as triton

    rows = digits_split[1].features[:8].astype(np.float32)
    client = triton.InferenceServerClient(daemon.url.removeprefix("http://"))
    try:
        assert client.is_server_live() and client.is_server_ready()
        assert client.is_model_ready("digits-edge")
        assert client.get_model_metadata("digits-edge")["inputs"][0]["datatype"] == "FP32"
        assert client.get_server_metadata()["name"] == "edgecascade-agent"
        answers = []
        for _ in range(3):  # the same pooled connection, several requests
            tensor = triton.InferInput("input", list(rows.shape), "FP32")
            tensor.set_data_from_numpy(rows, binary_data=binary)
            result = client.infer(
                "digits-edge",
                [tensor],
                outputs=[triton.InferRequestedOutput("label", binary_data=binary)],
                request_id="t-1",
                request_compression_algorithm=compression,
                response_compression_algorithm=compression,
            )
            answers.append([v.decode() if isinstance(v, bytes) else str(v) for v in result.as_numpy("label")])
        with pytest.raises(triton.InferenceServerException, match="404|unknown|not"):
            client.get_model_metadata("no-such-model")
    finally:
        client.close()
    assert answers[0] == answers[1] == answers[2]
    truth = [str(y) for y in digits_split[1].labels[:8]]
    assert sum(a == t for a, t in zip(answers[0], truth, strict=True)) >= 7  # the demo model: 96.9%
