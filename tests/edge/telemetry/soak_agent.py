"""A real agent process for fault tests: real Agent/Cascade on the demo model, real telemetry
buffer and uplink. Prints `ACK <seq>` after every flush (everything up to seq is committed) and
`DONE <seq>` at a graceful end, so a test can SIGKILL it at any moment and check what survived.

    python -m tests.edge.telemetry.soak_agent --config profile.toml --count 2000 --flush-every 25
"""

from __future__ import annotations

import argparse
import sys
import time


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", required=True)
    parser.add_argument("--count", type=int, default=0, help="predictions to make; 0 = until killed")
    parser.add_argument("--flush-every", type=int, default=25)
    parser.add_argument("--pause-s", type=float, default=0.0, help="sleep after each flush")
    parser.add_argument(
        "--drain-s", type=float, default=10.0, help="at the end, wait this long for the uplink"
    )
    args = parser.parse_args(argv)

    from edgecascade.edge import telemetry as edge_telemetry
    from edgecascade.edge.agent import Agent
    from edgecascade.edge.config import load_profile
    from edgecascade.shared.mqtt import MqttConnection, Topics
    from edgecascade.tools.datasets import load_split

    profile = load_profile(args.config)
    agent = Agent.from_profile(profile)
    connection = None
    if profile.mqtt.enabled:
        presence = Topics(profile.fleet).presence(profile.device_id)
        connection = MqttConnection(profile.mqtt.settings(profile.device_id, presence))
    parts = edge_telemetry.build(profile, connection)
    assert parts.recorder is not None
    agent.cascade.observers.append(parts.observer)
    for service in parts.services:
        service.start()
    if connection is not None:
        connection.start()
    print(f"START {parts.recorder.buffer.last_seq}", flush=True)
    features = load_split()[1].features
    made = 0
    while args.count == 0 or made < args.count:
        agent.predict(features[made % len(features)], request_id=f"r{made}")
        made += 1
        if made % args.flush_every == 0:
            print(f"ACK {parts.recorder.flush()}", flush=True)
            if args.pause_s:
                time.sleep(args.pause_s)
    last = parts.recorder.emit_metrics()  # closes the metrics interval: nothing is left for stop()
    print(f"ACK {last}", flush=True)
    deadline = time.monotonic() + args.drain_s
    while parts.buffer is not None and parts.buffer.depth and time.monotonic() < deadline:
        time.sleep(0.05)
    for service in reversed(parts.services):
        service.stop(2.0)
    if connection is not None:
        connection.stop()
    agent.close()
    print(f"DONE {last} left={parts.buffer.depth if parts.buffer else 0}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
