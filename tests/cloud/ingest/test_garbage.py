"""Garbage on a telemetry topic, as an attacker with write access to it would send: each of
the corpus below is refused (a counted log line) or, inside a valid batch, dead-lettered;
never a traceback. A valid batch follows every one of them and every valid record is stored.
The ingester is the real `edgecascade cloud ingest` process; its log is read afterwards."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edgecascade.cloud.ingest.sqlite_store import SqliteStore
from edgecascade.shared.mqtt import Topics
from edgecascade.shared.telemetry import RecordKind, encode_batch
from edgecascade.tools.mqtt_broker import BrokerProcess
from tests.cloud.ingest.support import FLEET, wait_for
from tests.conftest import REPO

DEVICE = "dev-g"
EVENT = json.dumps({"camera": "c1"})


def _env(records: object, **overrides: object) -> bytes:
    return json.dumps({"v": 1, "device": DEVICE, "records": records, **overrides}).encode()


def _nest(depth: int, open_: str = "[", close: str = "]") -> str:
    return open_ * depth + "1" + close * depth


def _rec(
    seq: object = 90_001, ts: object = 1.0, kind: object = "event", body: object = None
) -> dict[str, object]:
    return {"seq": seq, "ts": ts, "kind": kind, "body": {} if body is None else body}


#: Payloads refused as a whole: not a batch at all.
REFUSED: list[bytes] = [
    b"",
    b"\xff\xfe\x00garbage",
    "{}".encode("utf-16"),
    b"\xef\xbb\xbf" + _env([_rec()]),  # a UTF-8 byte-order mark
    _nest(100_000).encode(),  # nested far past the parser's recursion limit
    _nest(50_000, '{"a":', "}").encode(),
    ('{"v": 1, "device": "dev-g", "records": [' + _nest(20_000) + "]}").encode(),
    b" " * (2 * 1024 * 1024),  # 2 MiB, over the 1 MiB limit
    _env([_rec(seq=i + 1) for i in range(200)]) + b" " * (1024 * 1024),
    b"1" * 6000,  # an integer too long to convert
    b"null",
    b"true",
    b"42",
    b'"a string"',
    b"[]",
    b"{}",
    b'{"v": 1, "device": "dev-g", "records": [',  # truncated
    _env([_rec()]) + b" trailing",
    b'{"v": NaN, "device": "dev-g", "records": []}',
    _env([_rec()], v=2),
    _env([_rec()], v="1"),
    _env([_rec()], v=True),
    _env([_rec()], v=1.0),
    json.dumps({"device": DEVICE, "records": [_rec()]}).encode(),  # no version
    json.dumps({"v": 1, "records": [_rec()]}).encode(),  # no device
    _env([_rec()], device=""),
    _env([_rec()], device=7),
    _env([_rec()], device="x" * 200),
    _env([_rec()], device="dev-g\u0000"),
    _env([_rec()], device="\ud800"),
    _env([_rec()], device="dev-other"),  # speaks for another device
    _env(None),
    _env({}),
    _env("records"),
    _env([]),
    _env([_rec(seq=i + 1) for i in range(5001)]),  # more records than any batch may hold
    _env([_rec()], extra={"x": 1}),
]

#: Valid batches whose one record cannot be stored: it is dead-lettered, the batch acknowledged.
DEAD: list[bytes] = [
    _env([_rec(seq=2**63)]),
    _env([_rec(seq=-1)]),
    _env([_rec(seq="90002")]),
    _env([_rec(seq=1.5)]),
    _env([_rec(seq=None)]),
    _env([_rec(seq=90_003, ts=float("nan"))]),
    _env([_rec(seq=90_004, ts=float("inf"))]),
    _env([_rec(seq=90_005, ts="now")]),
    _env([_rec(seq=90_006, kind="gossip")]),
    _env([_rec(seq=90_007, kind=7)]),
    _env([_rec(seq=90_008, body={"x": float("nan")})]),
    _env([_rec(seq=90_009, body={"x": float("-inf")})]),
    _env([_rec(seq=90_010, body={"x": 2**64})]),
    _env([_rec(seq=90_011, body={"x": "a\u0000"})]),
    _env([_rec(seq=90_012, body={"x": "\udc80"})]),
    _env([_rec(seq=90_013, body=json.loads(_nest(200, '{"a":', "}")))]),
    _env([_rec(seq=90_014, body=[1, 2])]),
    _env([_rec(seq=90_015, kind="inference", body={"label": 3})]),
    _env([_rec(seq=90_016, kind="metrics", body={"requests": "many"})]),
    _env(["not a record"]),
    _env([None]),
    _env([{"seq": 90_017}]),
]


def test_garbage_corpus_is_refused_or_dead_lettered_and_never_a_traceback(
    tmp_path: Path, broker: BrokerProcess
) -> None:
    assert len(REFUSED) + len(DEAD) >= 40
    store_path = tmp_path / "cloud.sqlite3"
    log_path = tmp_path / "ingest.log"
    cmd = [sys.executable, "-m", "edgecascade", "--log-level", "INFO", "cloud", "ingest",
           "--broker", f"127.0.0.1:{broker.port}", "--fleet", FLEET, "--store", str(store_path),
           "--client-id", "ingest-g", "--stats-every", "1"]  # fmt: skip
    with open(log_path, "wb") as log:
        ingest = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=log, text=True)
    assert ingest.stdout is not None and ingest.stdout.readline().startswith("ingesting")
    topic = Topics(FLEET).telemetry(DEVICE)
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="attacker")
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    seq = 1
    try:
        # The first valid batch, resent until stored: the ingester's subscription is in place.
        for _ in range(100):
            client.publish(topic, encode_batch(DEVICE, [(1, 1.0, "event", EVENT)]), qos=1).wait_for_publish(
                10
            )
            if SqliteStore(store_path).count(DEVICE) == 1:
                break
            time.sleep(0.1)
        for payload in REFUSED + DEAD:
            client.publish(topic, payload, qos=1).wait_for_publish(10)
            seq += 1  # a valid batch after every garbage one
            client.publish(topic, encode_batch(DEVICE, [(seq, 1.0, "event", EVENT)]), qos=1).wait_for_publish(
                10
            )
        wait_for(
            lambda: SqliteStore(store_path).count(DEVICE) == seq, timeout_s=60, what="every valid record"
        )
        store = SqliteStore(store_path)
        assert store.seqs(DEVICE) == list(range(1, seq + 1))
        wait_for(lambda: len(store.dead_letters(DEVICE, 1000)) == len(DEAD), what="every dead letter")
        reasons = [d.reason for d in store.dead_letters(DEVICE, 1000)]
        assert all(r.startswith("records.0") for r in reasons), reasons
    finally:
        client.loop_stop()
        client.disconnect()
        ingest.send_signal(signal.SIGTERM)
        ingest.wait(20)
    log = log_path.read_text(errors="replace")
    assert "Traceback" not in log and "RecursionError" not in log
    assert log.count("refused a telemetry message") == len(REFUSED)
    assert log.count("went to the dead-letter table") == len(DEAD)
    assert f"'refused': {len(REFUSED)}" in log and f"'dead_lettered': {len(DEAD)}" in log
    assert max(len(line) for line in log.splitlines()) < 2000  # no payload echoed into the log


def test_a_flood_of_garbage_is_counted_in_full_but_logged_at_most_100_times_a_minute(
    tmp_path: Path, caplog
) -> None:  # type: ignore[no-untyped-def]
    from edgecascade.cloud.ingest.ingester import Ingester
    from edgecascade.shared.mqtt import MqttConnection, MqttSettings

    ingester = Ingester(
        MqttConnection(MqttSettings(client_id="flood")), SqliteStore(tmp_path / "c.sqlite3"), fleet=FLEET
    )
    topic = Topics(FLEET).telemetry(DEVICE).encode()
    with caplog.at_level("WARNING", logger="edgecascade.cloud.ingest.ingester"):
        for i in range(250):
            msg = mqtt.MQTTMessage(topic=topic)
            msg.payload = b"garbage %d" % i
            ingester.handle(msg)
    assert ingester.refused == 250
    assert sum("refused a telemetry message" in r.getMessage() for r in caplog.records) == 100


def test_a_batch_on_a_topic_word_level_cannot_claim_a_devices_sequence_numbers(
    tmp_path: Path, broker: BrokerProcess
) -> None:
    """The subscription's `+` matches `models`, `tables` and `artifacts` too, where no device
    speaks. A batch published there, claiming device dev-g, was stored as dev-g's: its real
    records of the same sequence numbers were then dropped as duplicates. It is refused now."""
    from tests.cloud.ingest.support import start_ingester

    store_path = tmp_path / "cloud.sqlite3"
    ingester, connection = start_ingester(broker.port, store_path)
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="spoofer")
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    forged = encode_batch(DEVICE, [(seq, 1.0, "event", json.dumps({"forged": True})) for seq in (1, 2, 3)])
    real = encode_batch(DEVICE, [(seq, 1.0, "event", EVENT) for seq in (1, 2, 3)])
    try:
        for word in ("models", "tables", "artifacts"):
            client.publish(f"edgecascade/{FLEET}/{word}/telemetry", forged, qos=1).wait_for_publish(10)
        wait_for(lambda: ingester.counters()["refused"] == 3, what="the forged batches refused")
        client.publish(Topics(FLEET).telemetry(DEVICE), real, qos=1).wait_for_publish(10)
        store = SqliteStore(store_path)
        wait_for(lambda: store.count(DEVICE) == 3, what="the device's own records")
        assert store.bodies(DEVICE, RecordKind.EVENT) == [json.loads(EVENT)] * 3
        assert ingester.counters()["duplicates"] == 0 and ingester.counters()["acks_sent"] == 1
    finally:
        client.loop_stop()
        client.disconnect()
        ingester.stop()
        connection.stop()
