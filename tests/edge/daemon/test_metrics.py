"""/metrics of a real running agent, parsed with prometheus_client's own text parser: counters
end in `_total`, units are in the names, process metrics are there, answers carry the model,
and edgecascade_model_info follows a real signed update over MQTT and its rollback."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from prometheus_client.parser import text_string_to_metric_families

from edgecascade.cloud.fleet.manifest_builder import build_manifest
from edgecascade.shared.manifest import public_key_b64
from edgecascade.shared.v2 import decode_infer_response, encode_infer_request
from edgecascade.tools.mqtt_broker import BrokerProcess, free_port
from tests.edge.daemon.support import DaemonProcess
from tests.edge.updates.helpers import FLEET, MODELS, copy_model, fine_tuned, start_fleet, wait_until

pytestmark = pytest.mark.slow


def scrape(url: str) -> dict[str, tuple[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]]]:
    """{family name: (type, {(sample name, sorted labels): value})}."""
    text = requests.get(url + "/metrics", timeout=5).text
    out = {}
    for family in text_string_to_metric_families(text):
        samples = {(s.name, tuple(sorted(s.labels.items()))): s.value for s in family.samples}
        out[family.name] = (family.type, samples)
    return out


def model_info(url: str) -> list[dict[str, str]]:
    _, samples = scrape(url)["edgecascade_model_info"]
    return [dict(labels) for (_, labels), value in samples.items() if value == 1.0]


def test_agent_metrics_follow_prometheus_conventions(
    tmp_path: Path, broker: BrokerProcess, digits_split
) -> None:
    _, held = digits_split
    key = Ed25519PrivateKey.generate()
    factory = copy_model(MODELS / "digits_edge_fp32.onnx", tmp_path / "factory")
    v2 = fine_tuned(MODELS / "digits_edge_fp32.onnx", tmp_path / "v2" / "digits_edge_fp32.onnx", "1.1.0")
    v3 = fine_tuned(
        MODELS / "digits_edge_fp32.onnx", tmp_path / "v3" / "digits_edge_fp32.onnx", "1.2.0", seed=1
    )
    port = free_port()
    profile = tmp_path / "m1.toml"
    profile.write_text(
        f"""profile = "x86-store-pc"
device_id = "m1"
fleet = "{FLEET}"
data_dir = "{tmp_path / "data"}"
memory_budget_mb = 300
[model]
name = "digits-edge"
path = "{factory}"
[cascade]
policies = [{{ kind = "max_prob", threshold = 0.68 }}]
[api]
port = {port}
[mqtt]
enabled = true
port = {broker.port}
[updates]
enabled = true
public_key = "{public_key_b64(key.public_key())}"
watch_window_s = 0.0
"""
    )
    daemon = DaemonProcess(profile, port, tmp_path / "d.log").start()
    fleet = start_fleet(broker.port, key, tmp_path / "fleet")
    try:
        sources: list[str] = []
        for start in range(0, 60, 20):
            body, headers = encode_infer_request(
                {"input": held.features[start : start + 20]}, request_id=str(start)
            )
            resp = requests.post(
                daemon.url + "/v2/models/digits-edge/infer", data=body, headers=headers, timeout=10
            )
            assert resp.status_code == 200, resp.text
            decoded = decode_infer_response(resp.content, resp.headers)
            sources += [p["source"] for p in decoded.parameters["provenance"]]
        metrics = scrape(daemon.url)

        # Every counter's samples end in _total; no gauge holds a running count any more.
        counters = {name for name, (kind, _) in metrics.items() if kind == "counter"}
        assert {"edgecascade_answers", "edgecascade_rejected", "edgecascade_bad_requests"} <= counters
        for name in counters:
            assert all(s.endswith("_total") for s, _ in metrics[name][1]), name
        assert not [n for n in metrics if n.endswith("_created")]
        assert "edgecascade_counter" not in metrics and "edgecascade_rss_mib" not in metrics
        assert metrics["edgecascade_table_hits"][0] == "counter"
        assert metrics["edgecascade_answer_cache_hits"][0] == "counter"
        assert metrics["edgecascade_answer_cache_bytes"][0] == "gauge"
        assert metrics["edgecascade_inflight_requests"][0] == "gauge"

        # Answers and latency per model, exact counts.
        kind, answers = metrics["edgecascade_answers"]
        by_source: dict[str, float] = {}
        for (_, labels), value in answers.items():
            lab = dict(labels)
            assert lab["model"] == "digits-edge" and lab["model_version"] == "1.0.0"
            by_source[lab["source"]] = by_source.get(lab["source"], 0) + value
        assert by_source == {s: float(sources.count(s)) for s in set(sources)}
        kind, latency = metrics["edgecascade_answer_latency_seconds"]
        assert kind == "histogram"
        counts = {
            dict(labels)["source"]: value
            for (name, labels), value in latency.items()
            if name == "edgecascade_answer_latency_seconds_count"
        }
        assert counts == by_source

        # Standard process metrics, in base units.
        rss = metrics["process_resident_memory_bytes"][1]
        assert 20 * 2**20 < next(iter(rss.values())) < 500 * 2**20
        assert metrics["process_cpu_seconds"][0] == "counter"
        assert metrics["process_start_time_seconds"][0] == "gauge"
        assert next(iter(metrics["process_open_fds"][1].values())) > 0

        # The serving model, after a real update and a real rollback.
        assert model_info(daemon.url) == [
            {
                "name": "digits-edge",
                "version": "1.0.0",
                "backend": "onnx",
                "accelerator": "CPUExecutionProvider",
            }
        ]
        for artifact, version in ((v2, "1.1.0"), (v3, "1.2.0")):
            manifest, payloads = build_manifest(artifact, fleet=FLEET, target="device:m1", chunk_size=4096)
            signed, sent = fleet.push(manifest, payloads)
            fleet.board.wait_for(signed.push_id, sent, 30)
            wait_until(lambda v=version: model_info(daemon.url)[0]["version"] == v, what=f"model {version}")
        back, sent = fleet.rollback("digits-edge", "device:m1")
        fleet.board.wait_for(back.push_id, sent, 30)
        wait_until(lambda: model_info(daemon.url)[0]["version"] == "1.1.0", what="rollback to 1.1.0")
        assert len(model_info(daemon.url)) == 1

        # Answers after the rollback are counted under the model that gave them.
        body, headers = encode_infer_request({"input": np.asarray(held.features[:5])}, request_id="after")
        requests.post(daemon.url + "/v2/models/digits-edge/infer", data=body, headers=headers, timeout=10)
        _, answers = scrape(daemon.url)["edgecascade_answers"]
        after = sum(v for (_, labels), v in answers.items() if dict(labels)["model_version"] == "1.1.0")
        assert after == 5.0
    finally:
        fleet.connection.stop()
        daemon.stop()
