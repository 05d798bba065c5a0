"""`edgecascade agent run`: one process owning the model(s), cascade, caches, telemetry buffer
and update subscriber, serving applications over HTTP, MQTT and a camera source.

Lifecycle (like uvicorn's server): `run()` starts every part and blocks. The first SIGTERM or
SIGINT asks for a graceful exit: new requests get 503, in-flight ones finish, telemetry is
flushed to disk (and sent if the broker is up), the offline presence is published, all within
`daemon.shutdown_timeout_s`; a second signal, or the timeout, forces the exit."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from types import FrameType
from typing import TYPE_CHECKING

from edgecascade.edge.agent import Agent, ModelWiring, model_files
from edgecascade.edge.cascade import AnswerObserver
from edgecascade.edge.config.profile import DeviceProfile
from edgecascade.edge.daemon.metrics import AgentMetrics
from edgecascade.edge.daemon.sd_notify import SystemdNotifier
from edgecascade.edge.local_model import backend_options
from edgecascade.edge.model_check import check_in_child
from edgecascade.edge.service import Service
from edgecascade.shared.mqtt import Topics

if TYPE_CHECKING:
    # The HTTP stack and paho-mqtt are imported in build() only when the profile enables them.
    from edgecascade.edge.daemon.local_api import LocalApi
    from edgecascade.shared.mqtt import MqttConnection

log = logging.getLogger(__name__)

EXIT_FORCED = 3


class _NoLocalApi:
    """The intake of a daemon without the local HTTP API: nothing to refuse, nothing in flight."""

    accepting = False
    inflight = 0


class BrokerLink:
    """The agent's one MQTT connection as a background Service, first to start and last to stop:
    the parts built on it (telemetry, deferral, updates, requests) start and stop inside it."""

    name = "mqtt"

    def __init__(self, connection: MqttConnection, profile: DeviceProfile) -> None:
        self.connection = connection
        self.profile = profile

    def start(self) -> None:
        if not self.connection.start(wait_s=2.0):
            log.warning(
                "MQTT broker %s:%d not reachable yet; working offline and retrying",
                self.profile.mqtt.host,
                self.profile.mqtt.port,
            )

    def stop(self, timeout_s: float) -> None:
        self.connection.stop()


class Daemon:
    def __init__(self, profile: DeviceProfile, *, on_ready: Callable[[], None] | None = None) -> None:
        """`on_ready` runs once READY=1 is sent (edge/cli.py: the garbage collector's return)."""
        self.profile = profile
        self.on_ready = on_ready
        self.stop_requested = threading.Event()
        self._signals = 0
        self.services: list[Service] = []  # background services, then front ends
        self.background: list[Service] = []
        self.front_ends: list[Service] = []
        self.metrics = AgentMetrics()
        self.connection: MqttConnection | None = None
        self.api: LocalApi | _NoLocalApi = _NoLocalApi()
        self.systemd = SystemdNotifier()

    # -- assembly -----------------------------------------------------------------------------
    def build(self) -> None:
        """Create every part from the profile, each whole at construction: a part the profile
        switches off is a do-nothing one (no telemetry, no deferral, an empty health monitor, no
        broker link), never a None to test for. Raises EdgecascadeError (bad model, bad config)
        before anything is started, so a bad profile fails fast. Background services start first
        and stop last; front ends (which take new work) start last and stop first."""
        from edgecascade.edge import deferred, telemetry, updates

        p = self.profile
        self.connection = _mqtt_connection(p)  # None offline: every part then works without MQTT
        self.telemetry = telemetry.build(p, self.connection, counters=self.counters)
        # Post-update health watches, one per model, each fed by that model only (_observers_for).
        self.health: dict[str, updates.HealthMonitor] = {}
        # Deferred escalation (late verdicts) for the first classifier, wired while the agent builds it.
        self.deferral = deferred.Deferral(p, self.connection, self.telemetry.recorder)
        # Every model loads first in a child process: one that crashes its interpreter never serves.
        # A pass is remembered per artifact, card, runtime and options: unchanged models skip it.
        check_in_child(model_files(p), options=backend_options(p), cache_dir=p.data_dir)
        self.agent = Agent.from_profile(p, observers_for=self._observers_for)
        self.deferred = self.deferral.parts
        self.metrics.track_models(lambda: [served.slot.current for served in self.agent.models.values()])
        self.executor = ThreadPoolExecutor(max_workers=p.api.workers, thread_name_prefix="cascade")
        self.background = [
            *_broker_link(self.connection, p),
            *self.telemetry.services,
            *self.deferred.services,
            *self._update_services(),
            *self._table_updaters(),
        ]
        self.front_ends = [
            *self._mqtt_requests(),
            *_camera_service(p, self.agent, self.connection),
            *self._http_api(),
        ]
        self.services = [*self.background, *self.front_ends]

    def _observers_for(self, model: ModelWiring) -> list[AnswerObserver]:
        """Who hears one model's answers: metrics, telemetry naming the model, its own
        post-update health watch (a classifier's answers; every task's model calls through
        its slot) and, for the first classifier, deferral."""
        from edgecascade.edge import updates

        observers = [self.metrics.observe, self.telemetry.observer_for(model.name, model.kind)]
        if self.profile.updates.enabled:
            health = self.health[model.name] = updates.health_monitor(self.profile, model.entry, model.kind)
            model.slot.observers.append(health.observe_run)  # the slot is new: nothing runs yet
            if model.kind == "classification":
                observers.append(health.observe)
        return [*observers, *self.deferral.observers_for(model)]

    def _update_services(self) -> list[Service]:
        """One model updater per served model, where MQTT and updates are on, each watching
        that model's health only."""
        from edgecascade.edge import updates

        p = self.profile
        if self.connection is None or not p.updates.enabled:
            return []
        tasks = [served.task for served in self.agent.models.values()]
        return [*updates.build_model_updaters(p, self.connection, tasks, self.health)]

    def _table_updaters(self) -> list[Service]:
        """One lookup-table updater per model with a table, where MQTT and table updates are on."""
        p, connection = self.profile, self.connection
        if connection is None or not (p.updates.enabled and p.updates.tables):
            return []
        from edgecascade.edge.updates.table_updater import TableUpdater

        return [
            TableUpdater(p, connection, lookups.table, model=name)
            for name, lookups in self.agent.model_lookups.items()
        ]

    def _mqtt_requests(self) -> list[Service]:
        """Inference requests over MQTT, where MQTT and daemon.mqtt_requests are on."""
        if self.connection is None or not self.profile.daemon.mqtt_requests:
            return []
        from edgecascade.edge.daemon.mqtt_requests import MqttRequestServer

        p = self.profile
        return [
            MqttRequestServer(self.agent, self.connection, self.executor, self.metrics, p.api.max_inflight)
        ]

    def _http_api(self) -> list[Service]:
        """The local HTTP API, where api.enabled."""
        p = self.profile
        if not p.api.enabled:
            return []
        from edgecascade.edge.daemon.http_server import HttpServer
        from edgecascade.edge.daemon.local_api import LocalApi

        self.api = LocalApi(
            self.agent,
            self.executor,
            self.metrics,
            max_inflight=p.api.max_inflight,
            retry_after_s=p.api.retry_after_s,
            max_body_bytes=int(p.api.max_body_mb * (1 << 20)),
            max_buffered_bytes=int(p.api.max_buffered_mb * (1 << 20)),
            counters=self.counters,
            verdicts=self.deferred.verdicts,
            pending=self.deferred.queue,
        )
        return [HttpServer(self.api, p.api.host, p.api.port, p.api.unix_socket)]

    def counters(self) -> dict[str, float]:
        out: dict[str, float] = dict(self.agent.counters())
        out.update({f"deferred_{k}": v for k, v in self.deferred.counters().items()})
        for service in self.services:
            counters = getattr(service, "counters", None)
            if callable(counters):
                out.update({f"{service.name}_{k}": v for k, v in counters().items()})
        out["rss_mib"] = _rss_mib()
        return out

    # -- lifecycle ----------------------------------------------------------------------------
    def run(self) -> int:
        self._install_signal_handlers()
        self.build()
        started: list[Service] = []
        try:
            for service in self.services:
                service.start()
                started.append(service)
        except BaseException:
            for service in reversed(started):
                service.stop(1.0)
            raise
        log.info(
            "agent %s running: models %s, %d services",
            self.profile.device_id,
            ", ".join(f"{m.name} {m.slot.current.card.version}" for m in self.agent.models.values()),
            len(self.services),
        )
        self.systemd.ready()
        if self.on_ready is not None:
            self.on_ready()
        last_memory_check = 0.0
        while not self.stop_requested.wait(1.0):
            self.systemd.watchdog()
            if time.monotonic() - last_memory_check > 30:
                last_memory_check = time.monotonic()
                rss = _rss_mib()
                if rss > self.profile.memory_budget_mb:
                    log.warning(
                        "RSS %.0f MiB is over the profile's memory budget of %d MiB",
                        rss,
                        self.profile.memory_budget_mb,
                    )
        return self.shutdown()

    def shutdown(self) -> int:
        timeout = self.profile.daemon.shutdown_timeout_s
        deadline = time.monotonic() + timeout
        watchdog = threading.Timer(
            timeout + 1.0, _force_exit, args=("shutdown took longer than its timeout",)
        )
        watchdog.daemon = True
        watchdog.start()
        log.info("stopping: finishing in-flight requests (up to %.0fs)", timeout)
        self.systemd.stopping()
        self.api.accepting = False
        while self.api.inflight and time.monotonic() < deadline:
            time.sleep(0.01)
        # Front ends first (no new work), then the executor drains, then telemetry flushes and,
        # last of the background, the broker link goes (after the offline presence is sent).
        for service in reversed(self.front_ends):
            service.stop(max(0.1, deadline - time.monotonic()))
        self.executor.shutdown(wait=True)
        for service in reversed(self.background):
            service.stop(max(0.1, deadline - time.monotonic()))
        self.deferred.close()
        self.telemetry.close()
        self.agent.close()
        watchdog.cancel()
        log.info("stopped cleanly")
        return 0

    def _install_signal_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._signals += 1
        if self._signals == 1:
            log.info(
                "received %s; shutting down gracefully (send again to force)", signal.Signals(signum).name
            )
            self.stop_requested.set()
        else:
            _force_exit(f"second {signal.Signals(signum).name}")


def _force_exit(why: str) -> None:
    log.error("forced exit: %s", why)
    logging.shutdown()
    os._exit(EXIT_FORCED)


def _mqtt_connection(profile: DeviceProfile) -> MqttConnection | None:
    """The agent's one MQTT connection (telemetry, updates, requests, events), if MQTT is on."""
    if not profile.mqtt.enabled:
        return None
    from edgecascade.shared.mqtt import MqttConnection

    presence = Topics(profile.fleet).presence(profile.device_id)
    # The largest packet the agent takes (MQTT 5): a request body (api.max_body_mb) with room
    # for its topic and properties; update chunks (256 KiB by default) are far below it.
    max_packet = int(profile.api.max_body_mb * (1 << 20)) + (1 << 20)
    return MqttConnection(
        profile.mqtt.settings(
            client_id=f"edgecascade-{profile.device_id}", presence_topic=presence, max_packet_bytes=max_packet
        )
    )


def _broker_link(connection: MqttConnection | None, profile: DeviceProfile) -> list[Service]:
    return [] if connection is None else [BrokerLink(connection, profile)]


def _camera_service(profile: DeviceProfile, agent: Agent, connection: MqttConnection | None) -> list[Service]:
    """The camera source, where camera.enabled."""
    if not profile.camera.enabled:
        return []
    from edgecascade.edge import sources

    build = getattr(sources, "build")  # noqa: B009 - the camera package is optional
    service: Service = build(profile, agent, connection)
    return [service]


def _rss_mib() -> float:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0
