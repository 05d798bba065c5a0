"""One bad record never stops ingestion, on SQLite and the real PostgreSQL: NaN in a body,
a sequence number of 2**63, `ts: NaN`. Each goes to the dead-letter table with its reason,
the rest of its batch is stored, the batch is acknowledged, and the counts are reported (a
log line, the ingester's counters, `fleet telemetry`); another device is not delayed."""

from __future__ import annotations

import json
import logging
import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edgecascade.cli import main
from edgecascade.cloud.ingest.store import TelemetryStore
from edgecascade.shared.mqtt import Topics
from edgecascade.shared.telemetry import (
    RecordKind,
    TelemetryBatch,
    TelemetryRecord,
    decode_batch,
)
from edgecascade.shared.telemetry_ack import decode_ack
from edgecascade.tools.mqtt_broker import BrokerProcess
from tests.cloud.ingest.support import FLEET, Device, start_ingester, wait_for, write_profile

EVENT = {"camera": "c1", "score": 0.5}


def _batch(device: str, *records: dict[str, object]) -> bytes:
    # json.dumps writes NaN and Infinity as bare tokens, as a buggy or hostile sender would.
    return json.dumps({"v": 1, "device": device, "records": list(records)}).encode()


def _rec(seq: object, ts: object = 1.0, kind: str = "event", body: object = None) -> dict[str, object]:
    return {"seq": seq, "ts": ts, "kind": kind, "body": EVENT if body is None else body}


def test_bad_records_are_dead_lettered_and_the_rest_of_the_batch_is_stored(store: TelemetryStore) -> None:
    payload = _batch(
        "dev-x",
        _rec(1),
        _rec(2, body={"score": float("nan")}),
        _rec(2**63),
        _rec(4, ts=float("nan")),
        _rec(5),
        _rec(6, kind="metrics", body={"requests": 2**63}),
        _rec(7, body={"note": "a\u0000b"}),
        _rec(8),
    )
    batch = decode_batch(payload, "dev-x")
    result = store.store(batch, 10.0)
    assert (result.stored, result.duplicates, result.dead_lettered) == (3, 0, 5)
    assert store.seqs("dev-x") == [1, 5, 8]
    letters = {(d.seq, d.reason.split(":")[0]) for d in store.dead_letters("dev-x")}
    assert letters == {
        (2, "records.1.body.score"),
        (None, "records.2.seq"),
        (4, "records.3.ts"),
        (6, "records.5.body.requests"),
        (7, "records.6.body.note"),
    }
    assert batch.settled_seqs() == [1, 5, 8, 2, 4, 6, 7]  # what the ingester acknowledges
    # Redelivered: nothing new, not even the record without a usable sequence number (it
    # was stored again on every redelivery: its NULL seq never collided in the old index).
    again = store.store(decode_batch(payload, "dev-x"), 11.0)
    assert (again.stored, again.duplicates, again.dead_lettered) == (0, 8, 0)
    (summary,) = store.summaries()
    assert (summary.device, summary.records, summary.dead_letters) == ("dev-x", 3, 5)


#: Every way a record's sequence number can be unusable, then one that is fine but its `ts` not.
_NO_SEQ: list[dict[str, object]] = [
    {"ts": 1.0, "kind": "event", "body": EVENT},  # missing
    *(_rec(seq) for seq in (None, -1, 2**63, "7", 1.5)),
]


def test_a_redelivered_or_resent_batch_adds_each_dead_letter_once(store: TelemetryStore) -> None:
    payload = _batch("dev-r", _rec(1), *_NO_SEQ, _rec(3, ts=float("nan")), _rec(9))
    first = store.store(decode_batch(payload, "dev-r"), 10.0)
    assert (first.stored, first.duplicates, first.dead_lettered) == (2, 0, 7)
    # The broker redelivers the same bytes; the device resends, re-encoded (key order, spacing).
    resent = json.dumps(json.loads(payload), sort_keys=True, indent=1).encode()
    for again in (payload, resent, payload):
        result = store.store(decode_batch(again, "dev-r"), 11.0)
        assert (result.stored, result.duplicates, result.dead_lettered) == (0, 9, 0)
    assert len(store.dead_letters("dev-r")) == 7 and store.seqs("dev-r") == [1, 9]
    # The one with a sequence number is known by it: resent in another batch, still once.
    moved = store.store(decode_batch(_batch("dev-r", _rec(10), _rec(3, ts=float("nan"))), "dev-r"), 12.0)
    assert (moved.stored, moved.duplicates, moved.dead_lettered) == (1, 1, 0)


def test_genuinely_different_bad_records_are_each_kept(store: TelemetryStore) -> None:
    """Only a record already stored is skipped: the same bad content elsewhere is another record."""
    bad = _rec(None)
    long_bad = [_rec(None, body={"note": "x" * 3000 + end}) for end in "ab"]  # differ past the excerpt

    def dead(*records: dict[str, object]) -> int:
        return store.store(decode_batch(_batch("dev-g", *records), "dev-g"), 10.0).dead_lettered

    assert dead(_rec(1), bad) == 1
    assert dead(bad, _rec(2)) == 1  # the same content at another position of another batch
    assert dead(_rec(1), bad, bad) == 2  # twice in one batch (another batch: one more record)
    assert dead(_rec(1), _rec(None, ts=2.0)) == 1  # other content at the same position
    assert dead(long_bad[0]) == 1 and dead(long_bad[1]) == 1
    # Two different records naming one sequence number (the old (device, seq) key kept one).
    assert dead(_rec(5, ts=float("nan"))) == 1 and dead(_rec(5, ts="now")) == 1
    assert dead(_rec(1), bad) == 0 and dead(long_bad[1]) == 0  # each of them is stored once
    assert len(store.dead_letters("dev-g")) == 9


def test_a_record_the_database_itself_refuses_becomes_a_dead_letter(store: TelemetryStore) -> None:
    """Past validation (a batch built in code): the database's own refusal is caught per row."""
    records = [
        TelemetryRecord(seq=1, ts=1.0, kind=RecordKind.EVENT, body=EVENT),
        TelemetryRecord.model_construct(seq=2**63, ts=1.0, kind=RecordKind.EVENT, body=EVENT),
        TelemetryRecord.model_construct(seq=3, ts=1.0, kind=RecordKind.EVENT, body={"x": float("inf")}),
        TelemetryRecord(seq=4, ts=1.0, kind=RecordKind.EVENT, body=EVENT),
    ]
    result = store.store(TelemetryBatch(1, "dev-y", records), 10.0)
    assert (result.stored, result.duplicates, result.dead_lettered) == (2, 0, 2)
    assert store.seqs("dev-y") == [1, 4]
    letters = sorted(store.dead_letters("dev-y"), key=lambda d: d.seq or 0)
    assert [d.seq for d in letters] == [None, 3]
    assert "refused by" in letters[0].reason and "cannot be written as JSON" in letters[1].reason


def _metrics(**figures: object) -> dict[str, object]:
    body: dict[str, object] = {
        "start": 0.0, "end": 60.0, "requests": 10, "by_source": {"edge": 10}, "escalated": 1,
        "degraded": 0, "latency_p50_ms": 2.5, "latency_p99_ms": 9.0, "latency_buckets": [0] * 14,
        "buffer_records": 0, "buffer_bytes": 0, "dropped_total": 0,
    }  # fmt: skip
    return {**body, **figures}


def test_metrics_figures_that_are_not_numbers_are_dead_lettered(store: TelemetryStore, capsys) -> None:  # type: ignore[no-untyped-def]
    """The body schema was lax: "NaN" passed as a float, "12" as an integer, and such text was
    stored in the number columns: SQLite summed "1_000" as 1, and `fleet telemetry` died with a
    traceback on a latency of "NaN". The schema is strict now (and the store refuses text in a
    number column too): each such record is a dead letter naming the field."""
    payload = _batch(
        "dev-m",
        _rec(1, kind="metrics", body=_metrics()),
        _rec(2, kind="metrics", body=_metrics(requests="1_000")),
        _rec(3, kind="metrics", body=_metrics(escalated=True)),
        _rec(4, kind="metrics", body=_metrics(dropped_total=2.0)),
        _rec(5, kind="metrics", body=_metrics(latency_p99_ms="Infinity")),
        _rec(6, kind="drops", body={"total": "7", "by_kind": {}, "by_reason": {}}),
        _rec(7, kind="metrics", body=_metrics(latency_p50_ms=3, latency_p99_ms=None)),
        _rec(8, kind="metrics", body=_metrics(latency_p50_ms="NaN")),
    )
    result = store.store(decode_batch(payload, "dev-m"), 10.0)
    assert (result.stored, result.duplicates, result.dead_lettered) == (2, 0, 6)
    assert store.seqs("dev-m") == [1, 7]
    reasons = {d.seq: d.reason for d in store.dead_letters("dev-m")}
    assert reasons == {
        2: "records.1.requests: Input should be a valid integer",
        3: "records.2.escalated: Input should be a valid integer",
        4: "records.3.dropped_total: Input should be a valid integer",
        5: "records.4.latency_p99_ms: Input should be a valid number",
        6: "records.5.total: Input should be a valid integer",
        8: "records.7.latency_p50_ms: Input should be a valid number",
    }
    (summary,) = store.summaries()
    assert (summary.requests, summary.escalated, summary.latency_p50_ms, summary.latency_p99_ms) == (
        20,
        2,
        3.0,
        None,
    )
    capsys.readouterr()
    assert main(["fleet", "telemetry", "--store", store.cli_url]) == 0  # type: ignore[attr-defined]
    (line,) = [row for row in capsys.readouterr().out.splitlines() if row.startswith("dev-m")]
    assert line.split()[-6:] == ["20", "10.0", "3.00", "-", "0", "6"]  # requests .. dead letters


def test_one_devices_bad_data_never_delays_another(
    store: TelemetryStore, broker: BrokerProcess, tmp_path, digits_split, caplog, capsys
) -> None:  # type: ignore[no-untyped-def]
    """25 batches from dev-bad each carry a 2**63 sequence number and a NaN body (20 of them
    stalled the SQLite ingester before), then `ts: NaN`; meanwhile dev-good answers 200 requests."""
    ingester, ing_conn = start_ingester(broker.port, store)
    topics = Topics(FLEET)
    acks: list[list[tuple[int, int]]] = []
    rogue = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="dev-bad")
    rogue.on_message = lambda c, u, m: acks.append(decode_ack(bytes(m.payload), "dev-bad"))
    rogue.connect("127.0.0.1", broker.port)
    rogue.subscribe(topics.telemetry_ack("dev-bad"), qos=1)
    rogue.loop_start()
    good = Device(write_profile(tmp_path / "good.toml", device="dev-good", port=broker.port))
    good.connection.start(wait_s=5.0)
    features = digits_split[1].features
    producing = threading.Thread(
        target=lambda: [good.predict(features, 20, start=i) for i in range(0, 200, 20)]
    )
    try:
        time.sleep(0.3)
        producing.start()
        for i in range(25):
            seq = 3 * i + 1
            bad = _batch("dev-bad", _rec(seq), _rec(2**63), _rec(seq + 1, body={"score": float("nan")}))
            rogue.publish(topics.telemetry("dev-bad"), bad, qos=1).wait_for_publish(5)
        rogue.publish(topics.telemetry("dev-bad"), _batch("dev-bad", _rec(100, ts=float("nan"))), qos=1)
        producing.join(30)
        good.recorder.flush()
        wait_for(lambda: store.count("dev-good") == 200, what="every record of the good device")
        wait_for(lambda: len(acks) == 26, what="an acknowledgement for every bad batch")
        assert store.seqs("dev-bad") == [3 * i + 1 for i in range(25)]
        assert ingester.dead_lettered == 25 + 25 + 1 and ingester.refused == 0
        acked = sorted(s for ack in acks for lo, hi in ack for s in range(lo, hi + 1))
        assert acked == sorted([3 * i + 1 for i in range(25)] + [3 * i + 2 for i in range(25)] + [100])
        wait_for(lambda: good.buffer.depth == 0, what="the good device's buffer to drain")
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert sum("went to the dead-letter table" in w for w in warnings) == 26
        assert not [r for r in caplog.records if r.exc_info]  # no traceback anywhere
    finally:
        rogue.loop_stop()
        rogue.disconnect()
        good.close()
        ingester.stop()
        ing_conn.stop()
    capsys.readouterr()
    url = store.cli_url  # type: ignore[attr-defined]
    assert main(["fleet", "telemetry", "--store", url, "--json"]) == 0
    rows = {r["device"]: r for r in map(json.loads, capsys.readouterr().out.splitlines())}
    assert rows["dev-bad"]["dead_letters"] == 51 and rows["dev-good"]["dead_letters"] == 0
    assert rows["dev-good"]["records"] == 200
    assert (
        main(
            ["fleet", "telemetry", "--store", url, "--dead-letters", "--device", "dev-bad", "--limit", "100"]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert out.count("records.1.seq: Input should be less than or equal to") == 25
    assert out.count("records.2.body.score: nan is not a finite number") == 25
    assert out.count("records.0.ts: Input should be a finite number") == 1


def test_one_devices_huge_figures_never_break_the_fleet_summary(store: TelemetryStore) -> None:
    """Two metrics records of 2^63 - 1 requests each are valid 64-bit figures, but their sum is
    not: SQLite's SUM raised "integer overflow" and `fleet telemetry` showed no device at all."""
    top = 2**63 - 1
    store.store(
        decode_batch(
            _batch(
                "dev-big",
                *(_rec(i, kind="metrics", body=_metrics(requests=top, escalated=top)) for i in (1, 2)),
            ),
            "dev-big",
        ),
        10.0,
    )
    store.store(decode_batch(_batch("dev-ok", _rec(1, kind="metrics", body=_metrics())), "dev-ok"), 10.0)
    rows = {s.device: s for s in store.summaries()}
    assert (rows["dev-ok"].requests, rows["dev-ok"].escalated) == (10, 1)
    assert rows["dev-big"].requests >= 2 * top - 2**12  # summed without overflow (as a float)
