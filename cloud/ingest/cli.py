"""`edgecascade cloud ingest`: run a telemetry ingester until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import logging
import signal
import socket
import threading
from typing import Any

from edgecascade.shared.telemetry import MAX_PAYLOAD_BYTES

log = logging.getLogger(__name__)

EPILOG = """examples:
  edgecascade cloud ingest --fleet demo --store var/telemetry.sqlite3
  edgecascade cloud ingest --broker mqtt.example.com:1883 --fleet demo \\
      --store postgresql://ingest@db/telemetry --group ingest --client-id ingest-a
Run several with the same --group (and distinct --client-id) to share the load; a lone
ingester keeps the default plain subscription, which the broker queues while it is away."""


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "ingest",
        help="store a fleet's telemetry from MQTT in SQLite or PostgreSQL",
        description="Subscribe to every device's telemetry topic of a fleet (an MQTT 5 shared "
        "subscription, so several ingesters can share the load) and store each record once, "
        "deduplicated on (device, sequence), then acknowledge it to the device, which deletes a "
        "record only then. Payloads that are not a batch are refused, logged and counted; records "
        "that cannot be stored go to a dead-letter table with their reason.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--broker", default="127.0.0.1:1883", metavar="HOST:PORT", help="MQTT broker")
    p.add_argument("--fleet", default="demo", help="fleet name in the topics (default demo)")
    p.add_argument(
        "--store",
        required=True,
        metavar="PATH|URL",
        help="SQLite file (or sqlite:///path), or a postgresql:// URL",
    )
    p.add_argument(
        "--group",
        default="",
        help="MQTT 5 shared-subscription group, to share the load among several ingesters. Default: "
        "none, a plain subscription, which the broker queues while this ingester is away (Mosquitto 2.0 "
        "does not queue a shared subscription for an offline member)",
    )
    p.add_argument(
        "--client-id",
        default=f"ingest-{socket.gethostname()}",
        help="fixed MQTT client id: the broker keeps this ingester's session across restarts",
    )
    p.add_argument("--protocol", type=int, choices=[4, 5], default=5, help="MQTT 5 (5) or 3.1.1 (4)")
    p.add_argument("--username", help="broker user")
    p.add_argument("--password", help="broker password (prefer EDGECASCADE_MQTT_PASSWORD)")
    p.add_argument(
        "--max-payload-kb",
        type=int,
        default=MAX_PAYLOAD_BYTES // 1024,
        metavar="KB",
        help=f"refuse telemetry messages larger than this (default {MAX_PAYLOAD_BYTES // 1024})",
    )
    p.add_argument(
        "--stats-every", type=float, default=60.0, metavar="S", help="log counters every S seconds"
    )
    p.set_defaults(func=_ingest)


def _ingest(args: argparse.Namespace) -> int:
    import os

    from edgecascade.cloud.ingest.ingester import Ingester, PersistentMqttConnection
    from edgecascade.cloud.ingest.stores import open_store
    from edgecascade.shared.errors import ConfigError
    from edgecascade.shared.mqtt import MqttSettings

    host, _, port = args.broker.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"expected HOST:PORT, got {args.broker!r}", key="--broker")
    store = open_store(args.store)
    settings = MqttSettings(
        host=host,
        port=int(port),
        client_id=args.client_id,
        username=args.username,
        password=args.password or os.environ.get("EDGECASCADE_MQTT_PASSWORD"),
        protocol=args.protocol,
    )
    connection = PersistentMqttConnection(settings)
    ingester = Ingester(
        connection, store, fleet=args.fleet, group=args.group, max_payload_bytes=args.max_payload_kb * 1024
    )
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    ingester.start()
    connection.start()
    print(f"ingesting {ingester.topic} from {args.broker} into {args.store}", flush=True)
    try:
        while not done.wait(args.stats_every):
            log.info("ingest counters: %s", ingester.counters())
    finally:
        ingester.stop()
        connection.stop()
        store.close()
    log.info("ingest counters at exit: %s", ingester.counters())
    return 0
