"""`python -m edgecascade.edge.updates.run_device --config PROFILE`: a minimal device that only takes updates.

Used by tests (kill -9 at any step) and the benchmark; the agent daemon supersedes it. It loads
the active model (the profile's first), starts its updater on its own MQTT connection and runs until SIGTERM."""

from __future__ import annotations

import argparse
import logging
import signal
import threading

from edgecascade.edge.config import load_profile
from edgecascade.edge.local_model import LocalModel, backend_options
from edgecascade.edge.model_slot import ModelSlot
from edgecascade.edge.updates import active_model_path, build, health_monitor
from edgecascade.shared.mqtt import MqttConnection, Topics


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", required=True, help="device profile (TOML)")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    profile = load_profile(args.config)
    slot = ModelSlot(LocalModel.load(active_model_path(profile), backend_options(profile)))
    presence = Topics(profile.fleet).presence(profile.device_id)
    connection = MqttConnection(profile.mqtt.settings(profile.device_id, presence))
    health = health_monitor(profile)
    slot.observers.append(health.observe_run)
    updater = build(profile, connection, slot, health=health)
    updater.start()
    connection.start()
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    done.wait()
    updater.stop(5.0)
    connection.stop()
    slot.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
