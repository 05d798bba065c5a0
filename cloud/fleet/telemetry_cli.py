"""`edgecascade fleet telemetry`: per-device figures from the telemetry store."""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict
from typing import Any

EPILOG = """examples:
  edgecascade fleet telemetry --store var/telemetry.sqlite3
  edgecascade fleet telemetry --store postgresql://ingest@db/telemetry --json"""


def add_parsers(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "telemetry",
        help="per-device telemetry: last seen, requests, escalation rate, latency, drops",
        description="Summarise what the ingester stored per device: when it was last heard from, "
        "requests and escalation rate (from metrics records, so sampling does not skew them), "
        "p50/p99 latency of the latest interval and records the device had to drop.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--store", required=True, metavar="PATH|URL", help="SQLite file or postgresql:// URL")
    p.add_argument("--json", action="store_true", help="one JSON object per device")
    p.set_defaults(func=_show)


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _show(args: argparse.Namespace) -> int:
    from edgecascade.cloud.ingest.store import open_store

    store = open_store(args.store)
    try:
        rows = store.summaries()
    finally:
        store.close()
    if args.json:
        for row in rows:
            print(json.dumps({**asdict(row), "escalation_rate": row.escalation_rate}))
        return 0
    now = time.time()
    print(f"{'DEVICE':<20} {'LAST SEEN':>10} {'RECORDS':>8} {'REQUESTS':>9} {'ESC%':>6} "
          f"{'P50 ms':>8} {'P99 ms':>8} {'DROPPED':>8}")  # fmt: skip
    for r in rows:
        rate = r.escalation_rate
        print(
            f"{r.device:<20} {_fmt(now - r.last_seen, '.0f') + 's ago':>10} {r.records:>8} {r.requests:>9} "
            f"{_fmt(None if rate is None else rate * 100, '.1f'):>6} {_fmt(r.latency_p50_ms, '.2f'):>8} "
            f"{_fmt(r.latency_p99_ms, '.2f'):>8} {r.dropped:>8}"
        )
    if not rows:
        print("(no telemetry stored yet)")
    return 0
