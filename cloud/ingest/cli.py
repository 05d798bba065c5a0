"""`edgecascade cloud ingest`: run a telemetry ingester until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from typing import Any

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
    from edgecascade.cloud.cli_settings import add_flags
    from edgecascade.cloud.ingest.settings import ENV_SECTION, IngestSettings

    add_flags(p, IngestSettings, section=ENV_SECTION)
    p.set_defaults(func=_ingest)


def _ingest(args: argparse.Namespace) -> int:
    from edgecascade.cloud.cli_settings import given_flags, load_settings
    from edgecascade.cloud.ingest.ingester import Ingester, PersistentMqttConnection
    from edgecascade.cloud.ingest.settings import ENV_SECTION, IngestSettings
    from edgecascade.cloud.ingest.stores import open_store
    from edgecascade.shared.mqtt import MqttSettings

    flags = given_flags(args, IngestSettings)
    config = load_settings(IngestSettings, flags, section=ENV_SECTION, command="edgecascade cloud ingest")
    host, port = config.host_port
    store = open_store(config.store, "--store" if "store" in flags else f"EDGECASCADE_{ENV_SECTION}__STORE")
    settings = MqttSettings(
        host=host,
        port=port,
        client_id=config.client_id,
        username=config.username,
        password=config.password.get_secret_value() if config.password else None,
        protocol=config.protocol,
    )
    connection = PersistentMqttConnection(settings)
    ingester = Ingester(
        connection,
        store,
        fleet=config.fleet,
        group=config.group,
        max_payload_bytes=config.max_payload_kb * 1024,
    )
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    ingester.start()
    connection.start()
    print(f"ingesting {ingester.topic} from {config.broker} into {config.store}", flush=True)
    try:
        while not done.wait(config.stats_every):
            log.info("ingest counters: %s", ingester.counters())
    finally:
        ingester.stop()
        connection.stop()
        store.close()
    log.info("ingest counters at exit: %s", ingester.counters())
    return 0
