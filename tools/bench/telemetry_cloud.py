"""Telemetry to the cloud: backlog drain rate through Mosquitto, and ingestion rate into SQLite
and PostgreSQL.

    python -m edgecascade.tools.bench.telemetry_cloud [--records 20000] [--pg postgresql://postgres@127.0.0.1/test]

Drain: a device buffer filled while offline is sent through a real Mosquitto on a free port
to a real ingester (SQLite) until every record is stored, with the default rate cap and
with the cap lifted. Ingestion: pre-validated batches of 200 into each store; the baseline
is the same records stored one per transaction."""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import uuid
from pathlib import Path

from edgecascade.cloud.ingest.ingester import Ingester, PersistentMqttConnection
from edgecascade.cloud.ingest.sqlite_store import SqliteStore
from edgecascade.cloud.ingest.store import TelemetryStore
from edgecascade.edge.config.telemetry import TelemetrySection
from edgecascade.edge.telemetry.buffer import TelemetryBuffer
from edgecascade.edge.telemetry.uplink import TelemetryUplink
from edgecascade.shared.mqtt import MqttConnection, MqttSettings, Topics
from edgecascade.shared.telemetry import decode_batch, encode_batch
from edgecascade.tools.mqtt_broker import BrokerProcess

BODY = json.dumps(
    {"model": "digits-edge", "model_version": "1", "source": "edge", "confidence": 0.93, "label": "3",
     "latency_ms": 0.21, "escalated": False, "degraded": False, "reason": "confident", "request_id": "r1"}
)  # fmt: skip


def drain(work: Path, records: int, rate: float) -> float:
    with BrokerProcess(workdir=work) as broker:
        store = SqliteStore(work / f"drain-{rate}.sqlite3")
        ing_conn = PersistentMqttConnection(MqttSettings(port=broker.port, client_id=f"bench-ing-{rate}"))
        ingester = Ingester(ing_conn, store, fleet="bench")
        ingester.start()
        ing_conn.start(wait_s=5)
        buffer = TelemetryBuffer(work / f"dev-{rate}.sqlite3", max_bytes=1 << 30, max_age_s=1e9)
        for i in range(0, records, 1000):
            buffer.append([(time.time(), "inference", BODY)] * min(1000, records - i))
        conn = MqttConnection(MqttSettings(port=broker.port, client_id=f"bench-dev-{rate}"))
        section = TelemetrySection.model_validate({"uplink_max_records_per_s": rate})
        uplink = TelemetryUplink(
            buffer,
            conn,
            topic=Topics("bench").telemetry("d1"),
            ack_topic=Topics("bench").telemetry_ack("d1"),
            device="d1",
            section=section,
        )
        conn.start(wait_s=5)
        time.sleep(0.3)
        start = time.perf_counter()
        uplink.start()
        while store.count() < records:
            time.sleep(0.01)
        elapsed = time.perf_counter() - start
        uplink.stop(2)
        conn.stop()
        ing_conn.stop()
        store.close()
        return records / elapsed


def ingest_rate(store: TelemetryStore, records: int) -> tuple[float, float]:
    batches = [
        decode_batch(encode_batch("d1", [(s, 1.0, "inference", BODY) for s in range(i + 1, i + 201)]))
        for i in range(0, records, 200)
    ]
    start = time.perf_counter()
    for b in batches:
        store.store(b, time.time())
    batched = records / (time.perf_counter() - start)
    singles = [decode_batch(encode_batch("d2", [(s, 1.0, "inference", BODY)])) for s in range(1, 1001)]
    start = time.perf_counter()
    for b in singles:
        store.store(b, time.time())
    single = len(singles) / (time.perf_counter() - start)
    return batched, single


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ec-bench-cloud-"))
    default_rate = TelemetrySection.model_validate({}).uplink_max_records_per_s
    capped = drain(work, args.records, default_rate)
    uncapped = drain(work, args.records, 1e9)
    print(f"backlog drain via Mosquitto, cap {default_rate:.0f}/s: {capped:,.0f} records/s")
    print(f"backlog drain via Mosquitto, no cap    : {uncapped:,.0f} records/s ({args.records} records)")
    batched, single = ingest_rate(SqliteStore(work / "ingest.sqlite3"), args.records)
    print(f"ingest SQLite: {batched:,.0f} records/s in batches of 200; {single:,.0f}/s one per batch "
          f"(ratio {batched / single:.1f}x)")  # fmt: skip
    try:
        from edgecascade.cloud.ingest.postgres_store import PostgresStore

        schema = f"ec_bench_{uuid.uuid4().hex[:8]}"
        pg = PostgresStore(args.pg, table_schema=schema)
    except Exception as exc:  # noqa: BLE001 - report and go on: PostgreSQL is optional here
        print(f"ingest PostgreSQL: skipped ({exc})")
        return
    batched, single = ingest_rate(pg, args.records)
    print(f"ingest PostgreSQL: {batched:,.0f} records/s in batches of 200; {single:,.0f}/s one per batch "
          f"(ratio {batched / single:.1f}x)")  # fmt: skip
    pg._db.execute(f'DROP SCHEMA "{schema}" CASCADE')
    pg.close()


if __name__ == "__main__":
    main()
