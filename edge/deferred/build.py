"""Turn a profile's [deferred] section into the observer, services and verdict store the daemon runs."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from edgecascade.edge.answer import Answer
from edgecascade.edge.cascade import AnswerObserver, CascadeRequest, CloudAnswerSink
from edgecascade.edge.cloud_client import CloudClient, NullCloudClient
from edgecascade.edge.config.profile import DeviceProfile
from edgecascade.edge.deferred.database import DeferredDatabase
from edgecascade.edge.deferred.observer import DeferredRecorder
from edgecascade.edge.deferred.queue import DeferredQueue
from edgecascade.edge.deferred.verdicts import VerdictStore
from edgecascade.edge.deferred.worker import LateVerdictWorker, VerdictRecorder
from edgecascade.edge.policies import Decision
from edgecascade.edge.service import Service
from edgecascade.shared.mqtt.topics import Topics

if TYPE_CHECKING:
    from edgecascade.edge.agent import ModelWiring
    from edgecascade.shared.mqtt import MqttConnection

log = logging.getLogger(__name__)

DEFERRED_FILE = "deferred.sqlite3"


def _no_deferral(request: CascadeRequest, answer: Answer, decision: Decision | None) -> None:
    """The observer of a device that does not defer hard cases."""


@dataclass
class DeferredParts:
    """What `build()` made. Where deferral is off: a do-nothing observer, no services, and
    `verdicts`/`queue`/`worker` None."""

    observer: AnswerObserver
    services: list[Service] = field(default_factory=list)
    verdicts: VerdictStore | None = None
    queue: DeferredQueue | None = None
    recorder: DeferredRecorder | None = None
    worker: LateVerdictWorker | None = None
    database: DeferredDatabase | None = None

    def counters(self) -> dict[str, int]:
        """For metrics and the demo: queued (now), sent (this process), verdicts (ever),
        pending_publish (now), dropped (ever, every reason)."""
        if self.database is None or self.queue is None or self.verdicts is None:
            return {"queued": 0, "sent": 0, "verdicts": 0, "pending_publish": 0, "dropped": 0}
        stored = self.database.counters()
        return {
            "queued": self.queue.depth(),
            "sent": self.worker.sent if self.worker else 0,
            "verdicts": stored.get("verdicts", 0),
            "pending_publish": self.verdicts.pending_publish(),
            "dropped": sum(v for k, v in stored.items() if k.startswith("dropped_"))
            + (self.recorder.lost_on_failure if self.recorder else 0),
        }

    def close(self) -> None:
        """Close the store, after the services are stopped."""
        if self.database is not None:
            self.database.close()


def build(
    profile: DeviceProfile,
    cloud: CloudClient,
    connection: MqttConnection | None,
    recorder: VerdictRecorder | None,
    cache: CloudAnswerSink | None,
    *,
    labels: Callable[[], Sequence[str]] | None = None,
    clock: Callable[[], float] = time.time,
) -> DeferredParts:
    """Open the store and make the observer (append to `cascade.observers`) and the services
    (writer, then worker; start in order, stop in reverse). `cloud` is the cascade's own
    client (its breaker is shared); `labels` gives the model's class labels for cloud answers
    (default: the class index as a string)."""
    section = profile.deferred
    if not section.enabled:
        log.info("deferred escalation is switched off in the profile")
        return DeferredParts(_no_deferral)
    if isinstance(cloud, NullCloudClient):
        log.info("no cloud configured: hard cases are answered locally and not deferred")
        return DeferredParts(_no_deferral)
    path = section.path or profile.data_dir / DEFERRED_FILE
    database = DeferredDatabase(path, synchronous=section.synchronous)
    queue = DeferredQueue(
        database,
        max_cases=section.max_cases,
        max_bytes=section.max_bytes,
        max_age_s=section.max_age_s,
        order=section.order,
    )
    verdicts = VerdictStore(database, max_verdicts=section.max_verdicts, ttl_s=section.verdict_ttl_s)
    raw_allowed = section.keep_raw and profile.cloud.send_raw_input
    writer = DeferredRecorder(
        queue, keep_raw=raw_allowed, flush_interval_ms=section.flush_interval_ms, clock=clock
    )
    worker = LateVerdictWorker(
        queue,
        verdicts,
        cloud,
        section,
        connection=connection,
        topic=Topics(profile.fleet).verdicts(profile.device_id),
        recorder=recorder,
        cache=cache,
        labels=labels,
        send_raw_input=raw_allowed,
        clock=clock,
    )
    log.info(
        "deferred store %s: %d cases queued, %d verdicts unpublished",
        path,
        queue.depth(),
        verdicts.pending_publish(),
    )
    return DeferredParts(writer, [writer, worker], verdicts, queue, writer, worker, database)


class Deferral:
    """Deferred escalation of the agent's first classifier, wired while the agent is built:
    `observers_for` is an ObserversFor (Agent.from_profile) that builds the parts, with that
    model's own cloud client, answer cache and labels, when it meets the first classification
    model, and returns its observer. `parts` are do-nothing parts until then, and stay so where
    no model is a classifier."""

    def __init__(
        self,
        profile: DeviceProfile,
        connection: MqttConnection | None,
        recorder: VerdictRecorder | None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.profile = profile
        self.connection = connection
        self.recorder = recorder
        self.clock = clock
        self.parts = DeferredParts(_no_deferral)
        self.model: str | None = None  # the classifier deferral serves, once met

    def observers_for(self, model: ModelWiring) -> list[AnswerObserver]:
        if self.model is not None or model.kind != "classification":
            return []
        self.model = model.name
        slot = model.slot
        self.parts = build(
            self.profile,
            model.cloud,
            self.connection,
            self.recorder,
            model.lookups.cache if model.lookups is not None else None,
            labels=lambda: slot.current.card.labels,
            clock=self.clock,
        )
        return [self.parts.observer]
