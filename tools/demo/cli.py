"""`edgecascade demo`: options are on the scenario's settings, not repeated here."""

from __future__ import annotations

import argparse
from pathlib import Path

from edgecascade.shared import cli_values


def register(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Start a real MQTT broker (Mosquitto, or amqtt if none is installed), the cloud API and the "
        "telemetry ingester, and three agents with different device profiles (Raspberry Pi 4 with LiteRT, "
        "an x86 store PC with ONNX Runtime, a Jetson reading a video file through its camera source). "
        "Stream the held-out digits through them, push a signed model update mid-run, cut the cloud "
        "and then the broker, restore them, and report accuracy, escalations, latency, answers per "
        "source, late verdicts and telemetry produced/delivered/lost, with a PNG dashboard."
    )
    parser.epilog = "example:\n  edgecascade demo --seconds 60 --workdir var/demo"
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument(
        "--seconds",
        type=cli_values.finite(1.0, 86_400.0),  # NaN ran no traffic, then the report crashed
        default=75.0,
        help="length of the traffic phase, 1 to 86400 (default %(default)s)",
    )
    parser.add_argument(
        "--rate",
        type=cli_values.finite(0.1, 1000.0),  # 0 divided by zero, a negative one flooded the agents
        default=25.0,
        help="requests/s per HTTP agent, 0.1 to 1000 (default %(default)s)",
    )
    parser.add_argument(
        "--workdir", type=Path, default=Path("var/demo"), help="logs, data and report (default %(default)s)"
    )
    parser.add_argument(
        "--broker",
        choices=["auto", "mosquitto", "amqtt"],
        default="auto",
        help="MQTT broker to start: Mosquitto if installed (auto), or the pure-Python amqtt",
    )
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from edgecascade.tools.demo.scenario import Scenario

    broker = None if args.broker == "auto" else args.broker
    return Scenario(args.workdir, seconds=args.seconds, rate=args.rate, broker=broker).run()
