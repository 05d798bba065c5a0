"""The demo's script: set up, run traffic through outages and an update, report, clean up."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import requests

from edgecascade.tools.demo.processes import REPO, Child
from edgecascade.tools.demo.report import Outage, report
from edgecascade.tools.demo.traffic import MqttListener, Recorder, scrape_detector_counters, stream_http
from edgecascade.tools.mqtt_broker import BrokerProcess, free_port

if TYPE_CHECKING:
    from edgecascade.tools.demo.setup import Prepared

FLEET = "demo"


@dataclass
class AgentSpec:
    device: str
    profile: str  # file in firmware-configs/
    camera: bool = False


AGENTS = [
    AgentSpec("demo-pi4", "raspberry-pi-4.toml"),
    AgentSpec("demo-storepc", "x86-store-pc.toml"),
    AgentSpec("demo-jetson", "jetson-orin-nano.toml", camera=True),
]


def say(msg: str) -> None:
    print(f"[demo {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _http_ok(url: str) -> bool:
    try:
        return requests.get(url, timeout=0.5).status_code == 200
    except requests.RequestException:
        return False


class Scenario:
    def __init__(
        self, workdir: Path, *, seconds: float = 75.0, rate: float = 25.0, broker: str | None = None
    ) -> None:
        self.broker_kind = broker
        self.work = workdir.resolve() / time.strftime("run-%Y%m%d-%H%M%S")
        self.seconds, self.rate = seconds, rate
        self.children: list[Child] = []
        self.broker: BrokerProcess | None = None

    def run(self) -> int:
        try:
            return self._run()
        finally:
            say("cleaning up")
            for child in reversed(self.children):
                child.stop()
            if self.broker is not None:
                self.broker.stop()

    def _spawn(
        self, name: str, args: list[str], ready_url: str | None = None, env: dict[str, str] | None = None
    ) -> Child:
        child = Child(name, args, self.work / "logs", env)
        self.children.append(child)
        return child.start((lambda: _http_ok(ready_url)) if ready_url else None)

    def _run(self) -> int:
        from edgecascade.tools.demo.setup import prepare

        (self.work / "logs").mkdir(parents=True, exist_ok=True)
        say(f"working in {self.work}")
        prep = prepare(self.work, say)
        protocol = self._start_broker()
        cloud_url = f"http://127.0.0.1:{free_port()}"
        cloud = self._start_cloud(prep, cloud_url)
        self._start_ingester(prep, protocol)
        urls = self._start_agents(prep, protocol, cloud_url)
        rec = Recorder()
        listener = MqttListener(
            self._broker().port, FLEET, "demo-jetson", prep.frame_labels, rec, protocol, prep.canvas_objects
        )
        listener.start()
        stop = threading.Event()
        streams = self._start_traffic(prep, urls, rec, stop)
        outages, pusher = self._follow_plan(prep, rec, cloud, cloud_url, protocol)
        stop.set()
        for t in streams:
            t.join(15)
        say("traffic stopped; waiting for telemetry and late verdicts to drain")
        prep.wait_for_drain(say, timeout_s=45)
        if pusher is not None:
            pusher.stop(5)
        rec.camera_counters = scrape_detector_counters(urls["demo-jetson"])
        for child in [c for c in self.children if c.name.startswith("demo-")]:
            child.stop()
        listener.stop()
        telemetry = prep.telemetry_totals()  # after the agents' final flush
        summary = report(rec, outages, telemetry, self.work, say)
        (self.work / "report.json").write_text(json.dumps(summary, indent=2, default=str))
        say(f"report: {self.work / 'report.json'}   dashboard: {self.work / 'dashboard.png'}")
        return 0 if summary["telemetry"]["lost"] == 0 else 1

    def _broker(self) -> BrokerProcess:
        assert self.broker is not None, "the broker starts first"
        return self.broker

    def _start_broker(self) -> int:
        """Start the broker; returns the MQTT protocol version everyone speaks (5, or 4 = 3.1.1)."""
        # Persistent like a production broker: the ingester's session and its queued QoS 1
        # messages survive the demo's broker outage.
        self.broker = BrokerProcess(
            workdir=self.work / "broker", persistent=True, prefer=self.broker_kind
        ).start()
        protocol = 5 if self.broker.supports_mqtt5 else 4
        say(
            f"MQTT broker: {self.broker.kind} on 127.0.0.1:{self.broker.port} (MQTT {'5' if protocol == 5 else '3.1.1'})"
        )
        return protocol

    def _start_cloud(self, prep: Prepared, cloud_url: str) -> Child:
        port = cloud_url.rsplit(":", 1)[1]
        args = ["cloud", "serve", "--repository", str(prep.cloud_repo), "--port", port]
        cloud = self._spawn(
            "cloud", [*args, "--tokens-file", str(prep.tokens_file)], cloud_url + "/v2/health/ready"
        )
        say(f"cloud API (Open Inference Protocol) at {cloud_url}")
        return cloud

    def _start_ingester(self, prep: Prepared, protocol: int) -> None:
        broker = f"127.0.0.1:{self._broker().port}"
        args = ["cloud", "ingest", "--broker", broker, "--fleet", FLEET, "--store", str(prep.telemetry_store)]
        self._spawn("ingest", [*args, "--client-id", "demo-ingest", "--protocol", str(protocol)])
        say("telemetry ingester subscribed")

    def _start_agents(self, prep: Prepared, protocol: int, cloud_url: str) -> dict[str, str]:
        """Start every demo agent; returns each device's local API URL."""
        urls: dict[str, str] = {}
        for spec in AGENTS:
            port = free_port()
            env = prep.agent_env(
                spec.device, port, self._broker().port, protocol, cloud_url, camera=spec.camera
            )
            # The camera agent runs its shipped profile plus the digit detector for its camera.
            profile = prep.camera_profile if spec.camera else REPO / "firmware-configs" / spec.profile
            args = ["agent", "run", "--config", str(profile)]
            self._spawn(spec.device, args, f"http://127.0.0.1:{port}/v2/health/ready", env)
            urls[spec.device] = f"http://127.0.0.1:{port}"
            say(
                f"agent {spec.device} ({spec.profile}) up at {urls[spec.device]}"
                + (
                    " running the digit detector on its camera (a video of digit canvases)"
                    if spec.camera
                    else ""
                )
            )
        return urls

    def _start_traffic(
        self, prep: Prepared, urls: dict[str, str], rec: Recorder, stop: threading.Event
    ) -> list[threading.Thread]:
        streams = [
            threading.Thread(
                target=stream_http,
                args=(d, urls[d], prep.held.features, prep.held.labels, self.rate, stop, rec),
                daemon=True,
            )
            for d in ("demo-pi4", "demo-storepc")
        ]
        for t in streams:
            t.start()
        say(f"streaming held-out digits for {self.seconds:.0f}s ({self.rate:.0f} req/s to each HTTP agent)")
        return streams

    def _follow_plan(
        self, prep: Prepared, rec: Recorder, cloud: Child, cloud_url: str, protocol: int
    ) -> tuple[list[Outage], Child | None]:
        """The run's events at fixed fractions of its length: an update, then the outages."""
        s = self.seconds
        broker = self._broker()
        outages: list[Outage] = []
        pusher: Child | None = None
        plan = [
            (0.2 * s, "push"),
            (0.35 * s, "cloud down"),
            (0.5 * s, "cloud up"),
            (0.62 * s, "broker down"),
            (0.77 * s, "broker up"),
            (s, "end"),
        ]
        for at, step in plan:
            self._wait_until(rec, at)
            if step == "push":
                say("fleet push: signed model digits-edge 1.1.0 to all devices over MQTT")
                pusher = self._spawn("fleet-push", prep.push_args(broker.port, protocol))
            elif step == "cloud down":
                say("cloud outage: stopping the cloud API")
                cloud.stop()
                outages.append(Outage("cloud", rec.now(), None))
            elif step == "cloud up":
                cloud.start(lambda: _http_ok(cloud_url + "/v2/health/ready"))
                outages[-1].end = rec.now()
                say("cloud restored; deferred hard cases will get late verdicts")
            elif step == "broker down":
                say("broker outage: stopping the MQTT broker (telemetry buffers on the devices)")
                broker.stop()
                outages.append(Outage("broker", rec.now(), None))
            elif step == "broker up":
                broker.start()
                outages[-1].end = rec.now()
                say("broker restored; buffered telemetry drains")
        return outages, pusher

    def _wait_until(self, rec: Recorder, at: float) -> None:
        last = -1
        while rec.now() < at:
            second = int(rec.now())
            if second % 10 == 0 and second != last:
                last = second
                with rec.lock:
                    n = len(rec.samples)
                say(f"t={second:3d}s  answers so far: {n}, late verdicts: {len(rec.verdicts)}")
            time.sleep(0.2)
