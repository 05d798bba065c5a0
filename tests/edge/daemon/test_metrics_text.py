"""The daemon's own metric store (edge/daemon/metrics.py) against prometheus_client's parser:
bucket edges, label escaping, counters and gauges, without a daemon."""

from __future__ import annotations

import threading

from prometheus_client.parser import text_string_to_metric_families

from edgecascade.edge.daemon.metrics import LATENCY_BUCKETS, AgentMetrics


def test_the_exposition_text_parses_with_prometheus_clients_parser() -> None:
    m = AgentMetrics()
    child = m.latency.labels('odd "name"\\\n', "1.0.0", "edge")
    for value in (LATENCY_BUCKETS[3], LATENCY_BUCKETS[3] * 1.01, 99.0):  # on a bound, just above, beyond
        child.observe(value)
    threads = [
        threading.Thread(target=lambda: [m.rejected.labels("http").inc() for _ in range(1000)])
        for _ in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    m.inflight.set_function(lambda: 3)
    text = m.render({"cache_bytes": 7, "table_hits": 2, "rss_mib": 50.0}).decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}

    hist = families["edgecascade_answer_latency_seconds"]
    assert hist.type == "histogram"
    buckets = {s.labels["le"]: s.value for s in hist.samples if s.name.endswith("_bucket")}
    assert buckets[repr(LATENCY_BUCKETS[3])] == 1.0  # le: a value on the bound is in its bucket
    assert buckets[repr(LATENCY_BUCKETS[4])] == 2.0 and buckets["+Inf"] == 3.0
    assert {s.labels["model"] for s in hist.samples} == {'odd "name"\\\n'}
    count = next(s.value for s in hist.samples if s.name.endswith("_count"))
    assert count == 3.0
    assert families["edgecascade_rejected"].samples[0].value == 2000.0
    assert families["edgecascade_rejected"].samples[0].name == "edgecascade_rejected_total"
    assert families["edgecascade_inflight_requests"].samples[0].value == 3.0
    assert families["edgecascade_answer_cache_bytes"].type == "gauge"
    assert families["edgecascade_table_hits"].type == "counter"
    assert "edgecascade_rss_mib" not in families
    assert families["process_resident_memory_bytes"].samples[0].value > 10 * 2**20
