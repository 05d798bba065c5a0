"""`edgecascade fleet telemetry`: per-device figures from the telemetry store."""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from edgecascade.cloud.fleet.terminal_text import shown
from edgecascade.shared import cli_values

if TYPE_CHECKING:
    from edgecascade.cloud.ingest.store import DeadLetter, ModelCount

#: Most dead letters listed at once (SQLite's LIMIT -1 would list them all).
MAX_LIMIT = 100_000

EPILOG = """examples:
  edgecascade fleet telemetry --store var/telemetry.sqlite3
  edgecascade fleet telemetry --store postgresql://ingest@db/telemetry --json
  edgecascade fleet telemetry --store var/telemetry.sqlite3 --dead-letters --device rpi4-0001
  edgecascade fleet telemetry --store var/telemetry.sqlite3 --by-model --device rpi4-0001"""


def add_parsers(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "telemetry",
        help="per-device telemetry: last seen, requests, escalation rate, latency, drops, dead letters",
        description="Summarise what the ingester stored per device: when it was last heard from, "
        "requests and escalation rate (from metrics records, so sampling does not skew them), "
        "p50/p99 latency of the latest interval, records the device had to drop, and records the "
        "ingester could not store (dead letters; --dead-letters lists them with their reason).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--store", required=True, metavar="PATH|URL", help="SQLite file or postgresql:// URL")
    p.add_argument("--json", action="store_true", help="one JSON object per device (or dead letter)")
    p.add_argument(
        "--dead-letters", action="store_true", help="list the newest dead letters instead, with their reason"
    )
    p.add_argument(
        "--by-model",
        action="store_true",
        help="per-request records per device and served model instead (escalated, degraded)",
    )
    p.add_argument("--device", help="with --dead-letters or --by-model: only this device's")
    p.add_argument(
        "--limit",
        type=cli_values.whole(1, MAX_LIMIT),
        default=20,
        help=f"with --dead-letters: how many, 1 to {MAX_LIMIT} (default 20)",
    )
    p.set_defaults(func=_show)


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _show(args: argparse.Namespace) -> int:
    from edgecascade.cloud.ingest.stores import open_store

    store = open_store(args.store)
    try:
        if args.dead_letters:
            return _show_dead_letters(store.dead_letters(args.device, args.limit), args.json)
        if args.by_model:
            return _show_models(store.model_counts(args.device), args.json)
        rows = store.summaries()
    finally:
        store.close()
    if args.json:
        for row in rows:
            print(json.dumps({**asdict(row), "escalation_rate": row.escalation_rate}))
        return 0
    now = time.time()
    print(f"{'DEVICE':<20} {'LAST SEEN':>10} {'RECORDS':>8} {'REQUESTS':>9} {'ESC%':>6} "
          f"{'P50 ms':>8} {'P99 ms':>8} {'DROPPED':>8} {'DEAD':>6}")  # fmt: skip
    for r in rows:
        rate = r.escalation_rate
        print(
            f"{shown(r.device):<20} {_fmt(now - r.last_seen, '.0f') + 's ago':>10} {r.records:>8} {r.requests:>9} "
            f"{_fmt(None if rate is None else rate * 100, '.1f'):>6} {_fmt(r.latency_p50_ms, '.2f'):>8} "
            f"{_fmt(r.latency_p99_ms, '.2f'):>8} {r.dropped:>8} {r.dead_letters:>6}"
        )
    if not rows:
        print("(no telemetry stored yet)")
    return 0


def _show_dead_letters(letters: list[DeadLetter], as_json: bool) -> int:
    if as_json:
        for d in letters:
            print(json.dumps(asdict(d)))
        return 0
    print(f"{'DEVICE':<20} {'SEQ':>20} {'KIND':<13} REASON")
    for d in letters:
        seq = "-" if d.seq is None else str(d.seq)
        # Device ids, kinds and reasons (which quote the record's own keys) are the device's text.
        print(f"{shown(d.device[:20]):<20} {seq:>20} {shown(d.kind or '-'):<13} {shown(d.reason)}")
    if not letters:
        print("(no dead letters)")
    return 0


def _show_models(counts: list[ModelCount], as_json: bool) -> int:
    if as_json:
        for c in counts:
            print(json.dumps(asdict(c)))
        return 0
    print(f"{'DEVICE':<20} {'MODEL':<24} {'RECORDS':>8} {'ESCALATED':>10} {'DEGRADED':>9}")
    for c in counts:
        print(
            f"{shown(c.device[:20]):<20} {shown((c.model or '-')[:24]):<24} {c.records:>8} {c.escalated:>10} {c.degraded:>9}"
        )
    if not counts:
        print("(no per-request records stored yet)")
    return 0
