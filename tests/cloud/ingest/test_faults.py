"""Fault tests with real parts: Mosquitto on a loopback port, the demo model, SQLite storage."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edgecascade.cloud.ingest.sqlite_store import SqliteStore
from edgecascade.shared.mqtt import Topics
from edgecascade.shared.telemetry import RecordKind, encode_batch
from edgecascade.shared.telemetry_ack import decode_ack
from edgecascade.tools.mqtt_broker import BrokerProcess
from tests.cloud.ingest.support import (
    FLEET,
    Device,
    persistent_broker,
    start_ingester,
    wait_for,
    write_profile,
)
from tests.conftest import REPO


@pytest.fixture
def pbroker(tmp_path: Path) -> Iterator[BrokerProcess]:
    broker = persistent_broker(tmp_path).start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.mark.parametrize("protocol", [5, 4], ids=["mqtt5", "mqtt311"])
def test_broker_outage_every_record_stored_exactly_once(pbroker, tmp_path, digits_split, protocol) -> None:  # type: ignore[no-untyped-def]
    """The same wire format and guarantees on MQTT 5 and 3.1.1, with the ingester's default plain
    subscription, whichever of device and ingester reconnects first to the restarted broker."""
    store_path = tmp_path / "cloud.sqlite3"
    ingester, ing_conn = start_ingester(pbroker.port, store_path, protocol=protocol)
    device = Device(
        write_profile(tmp_path / "dev.toml", device="dev-a", port=pbroker.port, protocol=protocol)
    )
    device.connection.start(wait_s=5.0)
    features = digits_split[1].features
    try:
        device.predict(features, 150)
        device.recorder.flush()
        wait_for(lambda: ingester.stored == 150, what="the first 150 records")
        pbroker.stop()
        device.predict(features, 250, start=150)  # steady inference while the broker is down
        last = device.recorder.flush()
        assert last == device.made(400)[-1] and device.buffer.depth == 250
        pbroker.start()
        wait_for(lambda: device.buffer.depth == 0, what="the backlog to drain")
        wait_for(lambda: ingester.stored == 400, what="all 400 records stored")
        store = SqliteStore(store_path)
        assert store.seqs("dev-a") == device.made(400)
        assert len(store.bodies("dev-a", RecordKind.INFERENCE)) == 400
        assert ingester.refused == 0 and ingester.dead_lettered == 0
    finally:
        device.close()
        ingester.stop()
        ing_conn.stop()


def _soak(profile: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.edge.telemetry.soak_agent", "--config", str(profile), *extra],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )


def _read_until(proc: subprocess.Popen[str], done: str | None = None, min_ack: int = 0) -> tuple[int, str]:
    """Read the agent's lines until an ACK >= min_ack (or a line starting with `done`)."""
    assert proc.stdout is not None
    last = 0
    for line in proc.stdout:
        word, _, rest = line.partition(" ")
        if word == "ACK":
            last = int(rest)
            if done is None and last >= min_ack:
                return last, line
        if done is not None and word == done:
            return last, line
    raise AssertionError(f"agent exited early with {proc.wait()}")


def test_kill_9_agent_mid_flush_then_restart_nothing_lost_nothing_duplicated(pbroker, tmp_path) -> None:  # type: ignore[no-untyped-def]
    store_path = tmp_path / "cloud.sqlite3"
    ingester, ing_conn = start_ingester(pbroker.port, store_path)
    profile = write_profile(tmp_path / "dev.toml", device="dev-k", port=pbroker.port, uplink_batch=20)
    try:
        agent = _soak(profile, "--flush-every", "7")
        _, first_line = _read_until(agent, done="START")
        first = int(first_line.split()[1])  # the new buffer's sequence before its first record
        acked, _ = _read_until(agent, min_ack=first + 600)  # flushing and publishing continuously
        os.kill(agent.pid, signal.SIGKILL)
        agent.wait(10)
        assert agent.stdout is not None
        for line in agent.stdout:  # ACKs printed before the kill landed still count
            if line.startswith("ACK "):
                acked = int(line.split()[1])
        again = _soak(profile, "--count", "40", "--flush-every", "10")
        _, start_line = _read_until(again, done="START")
        resumed_at = int(start_line.split()[1])
        assert resumed_at >= acked  # everything acknowledged survived SIGKILL
        last, done_line = _read_until(again, done="DONE")
        assert again.wait(20) == 0 and done_line.strip().endswith("left=0")
        assert last == resumed_at + 40 + 1  # 40 inference records and one metrics record
        wait_for(lambda: SqliteStore(store_path).count("dev-k") == last - first, what="every record stored")
        store = SqliteStore(store_path)
        assert store.seqs("dev-k") == list(range(first + 1, last + 1))  # none lost, none twice
        metrics = store.bodies("dev-k", RecordKind.METRICS)
        assert len(metrics) == 1 and metrics[0]["requests"] == 40
        assert len(store.bodies("dev-k", RecordKind.INFERENCE)) == last - first - 1
    finally:
        ingester.stop()
        ing_conn.stop()


def test_ingester_killed_and_restarted_nothing_lost_nothing_duplicated(
    pbroker, tmp_path, digits_split, store
) -> None:  # type: ignore[no-untyped-def]
    """`kill -9` of the ingester process while batches flow, on SQLite and PostgreSQL."""
    cmd = [sys.executable, "-m", "edgecascade", "cloud", "ingest", "--broker", f"127.0.0.1:{pbroker.port}",
           "--fleet", FLEET, "--store", store.cli_url, "--client-id", "ingest-k"]  # fmt: skip

    def start() -> subprocess.Popen[str]:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None and proc.stdout.readline().startswith("ingesting")
        return proc

    ingest = start()
    device = Device(write_profile(tmp_path / "dev.toml", device="dev-i", port=pbroker.port, uplink_batch=10))
    device.connection.start(wait_s=5.0)
    features = digits_split[1].features
    try:
        device.predict(features, 100)
        device.recorder.flush()
        wait_for(lambda: store.count() == 100, what="first 100 stored")
        device.predict(features, 300, start=100)
        device.recorder.flush()
        wait_for(lambda: store.count() > 100, what="ingestion under way")
        os.kill(ingest.pid, signal.SIGKILL)  # possibly in the middle of a batch
        ingest.wait(10)
        device.predict(features, 100, start=400)  # published while no ingester runs
        device.recorder.flush()
        uplink = device.uplink
        assert uplink is not None
        wait_for(lambda: uplink.ack_timeouts >= 1, what="an unacknowledged window")
        stored = store.count()
        assert stored < 500
        # Nothing the cloud has not stored left the device, whatever the broker has taken.
        assert device.buffer.depth >= 500 - stored
        ingest = start()
        wait_for(lambda: store.count() == 500, timeout_s=40, what="all 500 stored after restart")
        wait_for(lambda: device.buffer.depth == 0, what="the device to delete what was acknowledged")
        assert store.seqs("dev-i") == device.made(500)
    finally:
        ingest.send_signal(signal.SIGTERM)
        ingest.wait(10)
        device.close()


#: `cloud ingest` that SIGKILLs itself once it has committed a batch holding a dead letter:
#: the batch stored, neither the device's acknowledgement nor the broker's PUBACK sent.
_DIE_AFTER_STORING = """
import os, signal, sys
from edgecascade.cli import main
from edgecascade.cloud.ingest.ingester import Ingester
store = Ingester._store_with_retries
def store_then_die(self, batch):
    result = store(self, batch)
    if batch.rejected:
        os.kill(os.getpid(), signal.SIGKILL)
    return result
Ingester._store_with_retries = store_then_die
sys.exit(main(sys.argv[1:]))
"""


def test_ingester_killed_between_storing_and_puback_stores_each_dead_letter_once(pbroker, store) -> None:  # type: ignore[no-untyped-def]
    """`kill -9` of `cloud ingest` right after the commit of a batch with bad records: the
    broker redelivers the batch and the device resends it; on SQLite and PostgreSQL each
    valid record and each dead letter (with and without a sequence number) is stored once."""
    args = ["cloud", "ingest", "--broker", f"127.0.0.1:{pbroker.port}", "--fleet", FLEET,
            "--store", store.cli_url, "--client-id", "ingest-k9"]  # fmt: skip

    def start(*cmd: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen([*cmd, *args], cwd=REPO, stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None and proc.stdout.readline().startswith("ingesting")
        return proc

    topics = Topics(FLEET)
    acks: list[list[tuple[int, int]]] = []
    device = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="dev-9")
    device.on_message = lambda c, u, m: acks.append(decode_ack(bytes(m.payload), "dev-9"))
    device.connect("127.0.0.1", pbroker.port)
    device.subscribe(topics.telemetry_ack("dev-9"), qos=1)
    device.loop_start()

    def publish(payload: bytes) -> None:
        device.publish(topics.telemetry("dev-9"), payload, qos=1).wait_for_publish(5)

    event = json.dumps({"camera": "c"})
    rec = {"ts": 1.0, "kind": "event", "body": {"camera": "c"}}
    records = [{"seq": 2, **rec}, rec, {"seq": None, **rec}, {"seq": "4", **rec}, {"seq": 5, **rec, "ts": "now"},
               {"seq": 6, **rec}]  # fmt: skip
    batch = json.dumps({"v": 1, "device": "dev-9", "records": records}).encode()
    ingest = start(sys.executable, "-c", _DIE_AFTER_STORING)
    try:
        for _ in range(100):  # a good batch until one is stored: the subscription is in place
            publish(encode_batch("dev-9", [(1, 1.0, "event", event)]))
            if store.count("dev-9"):
                break
            time.sleep(0.1)
        publish(batch)
        assert ingest.wait(20) == -signal.SIGKILL
        # It died after the commit: everything is stored, nothing about it acknowledged.
        assert store.seqs("dev-9") == [1, 2, 6] and len(store.dead_letters("dev-9")) == 4
        assert all(seqs == [(1, 1)] for seqs in acks)
        publish(batch)  # the device resends what it has no acknowledgement for
        ingest = start(sys.executable, "-m", "edgecascade")
        wait_for(lambda: sum(seqs != [(1, 1)] for seqs in acks) >= 2, what="the batch acknowledged twice")
        assert [seqs for seqs in acks if seqs != [(1, 1)]] == [[(2, 2), (5, 6)]] * 2
        assert store.seqs("dev-9") == [1, 2, 6]
        letters = store.dead_letters("dev-9")
        assert sorted(d.reason.split(":")[0] for d in letters) == [
            "records.1.seq",
            "records.2.seq",
            "records.3.seq",
            "records.4.ts",
        ]
    finally:
        device.loop_stop()
        device.disconnect()
        ingest.send_signal(signal.SIGTERM)
        ingest.wait(10)


def test_disk_cap_offline_evicts_routine_first_and_the_drop_count_arrives(
    pbroker, tmp_path, digits_split
) -> None:  # type: ignore[no-untyped-def]
    store_path = tmp_path / "cloud.sqlite3"
    ingester, ing_conn = start_ingester(pbroker.port, store_path)
    device = Device(write_profile(tmp_path / "dev.toml", device="dev-d", port=pbroker.port, max_bytes=30000))
    features = digits_split[1].features
    try:  # the device never connected: offline from the start
        for i in range(5):
            device.recorder.record(RecordKind.VERDICT, _verdict(f"r{i}"))
        for i in range(3):
            device.recorder.record(RecordKind.UPDATE_STATUS, {"state": "installed", "n": i})
        device.predict(features, 200)
        for i in range(4):
            device.recorder.record(RecordKind.EVENT, {"camera": "c1", "n": i})
        device.recorder.emit_metrics()
        device.predict(features, 200, start=200)
        device.recorder.flush()
        dropped = device.buffer.dropped()
        assert set(dropped) == {"inference"} and dropped["inference"] > 0
        n_dropped = dropped["inference"]
        waiting = device.buffer.depth  # superseded (cumulative) drop reports are gone too
        assert waiting == 5 + 3 + 4 + 1 + (400 - n_dropped) + 1
        device.connection.start(wait_s=5.0)
        wait_for(lambda: device.buffer.depth == 0, what="the backlog to drain")
        store = SqliteStore(store_path)
        wait_for(lambda: store.count("dev-d") == waiting, what="storage")
        kinds = {k: len(store.bodies("dev-d", k)) for k in RecordKind}
        assert kinds[RecordKind.VERDICT] == 5 and kinds[RecordKind.UPDATE_STATUS] == 3
        assert kinds[RecordKind.EVENT] == 4 and kinds[RecordKind.METRICS] == 1
        assert kinds[RecordKind.INFERENCE] == 400 - n_dropped
        drops = store.bodies("dev-d", RecordKind.DROPS)
        assert drops[-1]["total"] == n_dropped and drops[-1]["by_kind"] == {"inference": n_dropped}
        metrics = store.bodies("dev-d", RecordKind.METRICS)[0]
        assert metrics["requests"] == 200  # the metrics saw every request, even the evicted ones
        # The oldest routine records went first: the survivors are the newest ones.
        ids = [int(b["request_id"][1:]) for b in store.bodies("dev-d", RecordKind.INFERENCE)]
        assert sorted(ids) == list(range(n_dropped, 400))
        assert store.summaries()[0].dropped == n_dropped
    finally:
        device.close()
        ingester.stop()
        ing_conn.stop()


def test_malformed_and_foreign_payloads_are_counted_never_stored(pbroker, tmp_path) -> None:  # type: ignore[no-untyped-def]
    store_path = tmp_path / "cloud.sqlite3"
    ingester, ing_conn = start_ingester(pbroker.port, store_path)
    topics = Topics(FLEET)
    good = encode_batch("dev-m", [(1, 1.0, "event", json.dumps({"camera": "c"}))])
    bad = [
        b"\xff\xfe not json",
        b"[1, 2, 3]",
        json.dumps({"v": 99, "device": "dev-m", "records": []}).encode(),
        encode_batch("someone-else", [(1, 1.0, "event", "{}")]),  # foreign: not its own topic
        json.dumps(
            {"v": 1, "device": "dev-m", "records": [{"seq": 0, "ts": 1, "kind": "event", "body": {}}]}
        ).encode(),
        encode_batch("dev-m", [(2, 1.0, "inference", json.dumps({"label": "3"}))]),  # body misses fields
        encode_batch("dev-m", [(3, 1.0, "no-such-kind", "{}")]),
    ]
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="rogue")
    client.connect("127.0.0.1", pbroker.port)
    client.loop_start()
    try:
        for payload in bad:
            client.publish(topics.telemetry("dev-m"), payload, qos=1).wait_for_publish(5)
        client.publish(topics.telemetry("dev-m"), good, qos=1).wait_for_publish(5)
        wait_for(lambda: ingester.stored == 1, what="the good batch")
        assert ingester.refused == 4  # not batches: refused, counted, never stored
        assert ingester.dead_lettered == 3  # records of valid batches: kept aside with the reason
        store = SqliteStore(store_path)
        assert store.seqs("dev-m") == [1]
        reasons = sorted(d.reason.split(":")[0] for d in store.dead_letters("dev-m"))
        assert reasons == ["records.0.kind", "records.0.model", "records.0.seq"]
    finally:
        client.loop_stop()
        client.disconnect()
        ingester.stop()
        ing_conn.stop()


def test_store_failure_is_never_acknowledged_and_nothing_is_lost(pbroker, tmp_path, digits_split) -> None:  # type: ignore[no-untyped-def]
    """The cloud database is locked by another writer for a while: the ingester retries, acks
    nothing meanwhile, and every record is stored exactly once when the lock goes."""
    import sqlite3

    store_path = tmp_path / "cloud.sqlite3"
    ingester, ing_conn = start_ingester(pbroker.port, store_path)
    device = Device(write_profile(tmp_path / "dev.toml", device="dev-a", port=pbroker.port))
    device.connection.start(wait_s=5.0)
    features = digits_split[1].features
    blocker = sqlite3.connect(store_path, timeout=0.1, isolation_level=None)
    try:
        device.predict(features, 50)
        device.recorder.flush()
        wait_for(lambda: ingester.stored == 50, what="the first 50 records")
        blocker.execute("BEGIN EXCLUSIVE")  # a real lock: the store's writes now fail
        device.predict(features, 120, start=50)
        device.recorder.flush()
        wait_for(lambda: ingester.store_failures >= 2, what="failing store attempts")
        assert ingester.stored == 50
        blocker.execute("ROLLBACK")
        wait_for(lambda: ingester.stored == 170, what="all 170 records stored after the lock")
        wait_for(lambda: device.buffer.depth == 0, what="the device buffer to drain")
        assert SqliteStore(store_path).seqs("dev-a") == device.made(170)
    finally:
        blocker.close()
        device.close()
        ingester.stop()
        ing_conn.stop()


def _verdict(request_id: str) -> dict[str, object]:
    return {
        "request_id": request_id,
        "edge_label": "3",
        "edge_confidence": 0.55,
        "cloud_label": "8",
        "cloud_confidence": 0.97,
        "cloud_model": "digits-cloud",
        "cloud_model_version": "1.0.0",
        "agree": False,
        "queued_at": 1.0,
        "answered_at": 2.0,
    }


def test_two_ingesters_share_the_load_through_a_shared_subscription(pbroker, tmp_path, digits_split) -> None:  # type: ignore[no-untyped-def]
    """Two ingesters in one group on MQTT 5: each record reaches exactly one of them, both do
    work, and the shared store holds every record once."""
    store_path = tmp_path / "cloud.sqlite3"
    a, conn_a = start_ingester(pbroker.port, store_path, client_id="ingest-a", group="ingest")
    b, conn_b = start_ingester(pbroker.port, store_path, client_id="ingest-b", group="ingest")
    devices = [
        Device(write_profile(tmp_path / f"{name}.toml", device=name, port=pbroker.port, uplink_batch=10))
        for name in ("dev-1", "dev-2")
    ]
    features = digits_split[1].features
    try:
        for device in devices:
            device.connection.start(wait_s=5.0)
        for round_ in range(10):
            for device in devices:
                device.predict(features, 30, start=round_ * 30)
                device.recorder.flush()
            time.sleep(0.05)
        wait_for(lambda: a.stored + b.stored == 600, what="600 records across both ingesters")
        assert a.batches > 0 and b.batches > 0, (a.counters(), b.counters())
        assert a.duplicates == 0 and b.duplicates == 0  # a shared subscription delivers once
        store = SqliteStore(store_path)
        assert store.seqs("dev-1") == devices[0].made(300) and store.seqs("dev-2") == devices[1].made(300)
    finally:
        for device in devices:
            device.close()
        for ingester, conn in ((a, conn_a), (b, conn_b)):
            ingester.stop()
            conn.stop()
