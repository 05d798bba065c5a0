"""Model updates at fleet scale, on loopback, with every part real: Mosquitto, the fleet manager,
the artifact route under uvicorn (its own process), and N agents (each its own MQTT connection,
model slot and updater, in this process; every candidate is tested in a child process).

    python -m edgecascade.tools.bench.updates [--agents 50] [--sizes 1,20] [--routes mqtt,http] [--swaps 8]

1. Time from publishing until all N agents report `active`, per model size and route (a full
   update: download, verify, test in a child, load, swap). The baseline is the 1 MiB MQTT push.
2. Bytes per device for a full update versus a bsdiff delta of a fine-tuned model: readout
   refitted (pushed, timed), and every weight nudged by ~1% (delta size only).
3. Requests failed while swapping under steady load: threads call Cascade.answer on held-out
   digits while the device takes `--swaps` updates; exceptions counted (target 0), latency
   during the swaps against the same device's latency without swaps.

On one 2-core box the N agents share the CPU (N child checks at once); a real fleet has a CPU
per device, so the times here are pessimistic. Figures print as they come."""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edgecascade.cloud.fleet.manager import FleetManager
from edgecascade.cloud.fleet.manifest_builder import build_manifest
from edgecascade.edge.config.profile import DeviceProfile
from edgecascade.edge.local_model import LocalModel, backend_options
from edgecascade.edge.model_slot import ModelSlot
from edgecascade.edge.updates import active_model_path, build
from edgecascade.edge.updates.updater import ModelUpdater
from edgecascade.shared.manifest import public_key_b64
from edgecascade.shared.mqtt import MqttConnection, MqttSettings, Topics
from edgecascade.tools.bench.update_models import FACTORY, nudge_all, refit_readout, sized_model, with_version
from edgecascade.tools.mqtt_broker import BrokerProcess, free_port, wait_for_port

FLEET = "bench"
_SERVE = (
    "import sys, uvicorn; from pathlib import Path; from starlette.applications import Starlette;"
    "from edgecascade.cloud.artifacts import artifact_routes;"
    "uvicorn.run(Starlette(routes=artifact_routes(Path(sys.argv[1]))), host='127.0.0.1',"
    " port=int(sys.argv[2]), log_level='warning', lifespan='off', ws='none')"
)


class Agent:
    def __init__(self, home: Path, device: str, port: int, key: Ed25519PrivateKey, factory: Path) -> None:
        profile = DeviceProfile.model_validate(
            {
                "profile": "bench",
                "device_id": device,
                "fleet": FLEET,
                "data_dir": str(home / device),
                "memory_budget_mb": 300,
                "runtime": {"warmup_runs": 0},
                "model": {"name": "digits-edge", "path": str(factory)},
                "mqtt": {"enabled": True, "port": port},
                "updates": {
                    "enabled": True,
                    "public_key": public_key_b64(key.public_key()),
                    "check_timeout_s": 600.0,  # N child checks share two cores here
                    "stall_timeout_s": 30.0,
                    "download_timeout_s": 900.0,
                    "watch_window_s": 0.0,
                },
            }
        )
        self.slot = ModelSlot(LocalModel.load(active_model_path(profile), backend_options(profile)))
        settings = profile.mqtt.settings(device, Topics(FLEET).presence(device))
        self.connection = MqttConnection(settings)
        self.updater: ModelUpdater = build(profile, self.connection, self.slot)
        self.updater.start()
        self.connection.start()

    def stop(self) -> None:
        self.updater.stop(5)
        self.connection.stop()
        self.slot.close()


def _push(
    fleet: FleetManager, devices: list[str], artifact: Path, route: str, base_url: str | None, **kw: object
) -> tuple[float, int]:
    """Build, sign and publish to all; (seconds from publishing until all are active, payload bytes)."""
    manifest, payloads = build_manifest(
        artifact,
        fleet=FLEET,
        target="all",
        route=route,
        base_url=base_url,
        **kw,  # type: ignore[arg-type]
    )
    t0 = time.perf_counter()
    signed, _ = fleet.push(manifest, payloads)
    final = fleet.board.wait_for(signed.push_id, devices, 1800)
    took = time.perf_counter() - t0
    bad = {d: (s.state, s.reason) if s else None for d, s in final.items() if not s or s.state != "active"}
    if bad:
        print(f"    NOT active: {len(bad)} of {len(devices)}, e.g. {dict(list(bad.items())[:3])}")
    blob = manifest.delta.blob if manifest.delta is not None else manifest.artifact
    return took, blob.size_bytes


def _push_measured(
    fleet: FleetManager,
    agents: dict[str, Agent],
    artifact: Path,
    route: str,
    base_url: str | None,
    delta_base: Path | None = None,
) -> tuple[float, list[int], int]:
    """Push to every agent: (seconds until all are active, bytes each downloaded, blob size)."""
    before = [a.updater.pipeline.bytes_downloaded for a in agents.values()]
    took, nbytes = _push(fleet, list(agents), artifact, route, base_url, delta_base=delta_base)
    got = [a.updater.pipeline.bytes_downloaded - b for a, b in zip(agents.values(), before, strict=True)]
    return took, got, nbytes


def fleet_scale(args: argparse.Namespace, work: Path, port: int, key: Ed25519PrivateKey) -> None:
    art_root = work / "artifacts"
    art_root.mkdir()
    http_port = free_port()
    server = subprocess.Popen([sys.executable, "-c", _SERVE, str(art_root), str(http_port)])
    wait_for_port(http_port, 30)
    base_url = f"http://127.0.0.1:{http_port}"
    conn = MqttConnection(MqttSettings(port=port, client_id="bench-fleet"))
    fleet = FleetManager(conn, FLEET, key, work / "fleet", artifacts_dir=art_root)
    assert conn.start(wait_s=5)
    names = [f"a{i:03d}" for i in range(args.agents)]
    t = time.perf_counter()
    agents = [Agent(work / "agents", n, port, key, FACTORY) for n in names]
    while len(fleet.board.statuses()) < len(names):
        time.sleep(0.1)
    print(f"{args.agents} agents up in {time.perf_counter() - t:.1f}s")
    results: dict[tuple[float, str], float] = {}
    try:
        for size in args.sizes:
            base = sized_model(work / "models", size, "1.0.0")
            for n, route in enumerate(args.routes):
                full = with_version(base, work / f"full-{size:g}-{route}", f"{size:g}.{n}.0")
                took, got, nbytes = _push_measured(
                    fleet, dict(zip(names, agents, strict=True)), full, route, base_url
                )
                results[(size, route)] = took
                print(
                    f"  full {size:g} MiB over {route:4s}: all {args.agents} active after {took:6.1f}s "
                    f"({nbytes / 1e6:.2f} MB artifact; median {np.median(got) / 1e6:.2f} MB per device)"
                )
                if n == 0:
                    tuned = refit_readout(full, work / f"tuned-{size:g}", f"{size:g}.{n}.1")
                    took, got, _ = _push_measured(
                        fleet, dict(zip(names, agents, strict=True)), tuned, route, base_url, delta_base=full
                    )
                    print(
                        f"  delta {size:g} MiB (readout refitted) over {route}: all active after {took:6.1f}s; "
                        f"{np.median(got) / 1e3:.1f} kB per device vs {full.stat().st_size / 1e3:.1f} kB full "
                        f"({np.median(got) / full.stat().st_size:.2%})"
                    )
        fleet.publish_retained(fleet.topics.manifest_all("digits-edge"), b"")  # part 3's agent starts clean
        ref = results.get((args.sizes[0], args.routes[0]))
        if ref:
            print("time to all active, ratio to the first size/route:")
            for (size, route), took in results.items():
                print(f"  {size:g} MiB {route:4s} {took:7.1f}s  x{took / ref:.2f}")
    finally:
        for a in agents:
            a.stop()
        conn.stop()
        server.terminate()
        server.wait(10)


def delta_sizes(args: argparse.Namespace, work: Path) -> None:
    import bsdiff4

    for size in args.sizes:
        base = sized_model(work / "models", size, "1.0.0")
        data = base.read_bytes()
        for label, make in (("readout refitted", refit_readout), ("all weights nudged 1%", nudge_all)):
            tuned = make(base, work / f"d-{label[:3]}-{size:g}", "1.0.1")
            t = time.perf_counter()
            diff = bsdiff4.diff(data, tuned.read_bytes())
            print(
                f"  {size:g} MiB, {label:22s}: full {len(data) / 1e6:6.2f} MB, delta {len(diff) / 1e6:6.3f} MB "
                f"({len(diff) / len(data):6.1%}); bsdiff took {time.perf_counter() - t:.1f}s"
            )


def _load(
    cascade: object, rows: np.ndarray, stop: threading.Event, lat: list[float], errors: list[str]
) -> None:
    from edgecascade.edge.cascade import Cascade, CascadeRequest

    assert isinstance(cascade, Cascade)
    i = 0
    while not stop.is_set():
        row = rows[i % len(rows)]
        i += 1
        t = time.perf_counter()
        try:
            cascade.answer(CascadeRequest(row))
        except Exception as exc:  # counted and reported: this is what the benchmark measures
            errors.append(repr(exc))
            continue
        lat.append((time.perf_counter() - t) * 1e6)


def _under_load(
    cascade: object, rows: np.ndarray, threads: int, during: Callable[[], None] | float
) -> tuple[list[float], list[str], float]:
    """`threads` threads calling the cascade while `during` runs (or for that many seconds):
    (latencies in µs, failures, seconds)."""
    stop = threading.Event()
    lat: list[list[float]] = [[] for _ in range(threads)]
    errors: list[str] = []
    workers = [
        threading.Thread(target=_load, args=(cascade, rows, stop, lat[i], errors), daemon=True)
        for i in range(threads)
    ]
    t = time.perf_counter()
    for th in workers:
        th.start()
    during() if callable(during) else time.sleep(float(during))
    stop.set()
    for th in workers:
        th.join()
    return [x for part in lat for x in part], errors, time.perf_counter() - t


def swap_under_load(args: argparse.Namespace, work: Path, port: int, key: Ed25519PrivateKey) -> None:
    from edgecascade.edge.cascade import Cascade
    from edgecascade.edge.policies import MaxProbabilityPolicy
    from edgecascade.tools.datasets import load_split

    rows = load_split()[1].features.astype(np.float32)
    conn = MqttConnection(MqttSettings(port=port, client_id="bench-fleet-swaps"))
    fleet = FleetManager(conn, FLEET, key, work / "fleet-swaps")
    assert conn.start(wait_s=5)
    agent = Agent(work / "swap-agent", "s001", port, key, FACTORY)
    cascade = Cascade(agent.slot, MaxProbabilityPolicy(0.0))  # the model path only, no cloud

    def swaps() -> None:
        for k in range(args.swaps):
            artifact = with_version(FACTORY, work / f"swap-{k}", f"3.0.{k + 1}")
            took, _ = _push(fleet, ["s001"], artifact, "mqtt", None)
            print(f"    swap {k + 1}: active after {took:.2f}s, serving {agent.slot.current.card.version}")

    try:
        while "s001" not in fleet.board.statuses():
            time.sleep(0.05)
        base, base_err, base_s = _under_load(cascade, rows, args.load_threads, args.load_s)
        during, errors, during_s = _under_load(cascade, rows, args.load_threads, swaps)
        for name, lat, err, secs in (
            ("no swaps", base, base_err, base_s),
            ("swapping", during, errors, during_s),
        ):
            arr = np.asarray(lat)
            print(
                f"  {name:9s}: {len(arr) + len(err):7d} requests in {secs:5.1f}s, failed {len(err)}; "
                f"latency median {np.median(arr):7.1f} us  p99 {np.percentile(arr, 99):8.1f} us"
            )
        ratio = np.percentile(during, 99) / np.percentile(base, 99)
        print(f"  p99 during swaps / p99 without: x{ratio:.2f}; failed requests during swaps: {len(errors)}")
        if errors:
            print(f"  first failures: {errors[:3]}")
    finally:
        agent.stop()
        conn.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--agents", type=int, default=50, help="agents on loopback")
    parser.add_argument("--sizes", default="1,20", help="model sizes in MiB, comma-separated")
    parser.add_argument("--routes", default="mqtt,http", help="routes: mqtt, http")
    parser.add_argument("--swaps", type=int, default=8, help="updates under load in part 3")
    parser.add_argument("--load-threads", type=int, default=4, help="threads calling the cascade")
    parser.add_argument("--load-s", type=float, default=5.0, help="seconds of load without swaps")
    parser.add_argument("--skip-fleet", action="store_true", help="skip part 1 (the N-agent pushes)")
    args = parser.parse_args(argv)
    args.sizes = [float(x) for x in args.sizes.split(",") if x]
    args.routes = [r for r in args.routes.split(",") if r]
    key = Ed25519PrivateKey.generate()
    with tempfile.TemporaryDirectory(prefix="edgecascade-bench-updates-") as tmp:
        work = Path(tmp)
        with BrokerProcess(workdir=work) as broker:
            t = time.perf_counter()
            if not args.skip_fleet:
                print(
                    f"1. time until {args.agents} agents are all active (full update; delta over the first route)"
                )
                fleet_scale(args, work, broker.port, key)
            print("2. bytes on the wire per device: full vs bsdiff delta")
            delta_sizes(args, work)
            print(f"3. requests failed during {args.swaps} swaps under load ({args.load_threads} threads)")
            swap_under_load(args, work, broker.port, key)
            print(f"benchmark took {time.perf_counter() - t:.0f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
