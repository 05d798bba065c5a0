"""Deferred escalation and late verdicts: hard cases the cloud could not answer (offline,
breaker open, over budget) are answered locally at once (degraded), queued durably, sent when
the cloud is back, and each cloud answer is delivered once as a late verdict (MQTT event,
local API, telemetry record, cloud-answer cache). The daemon wires it in while the agent is
built, so the observer is the first classifier's from the start:

    deferral = edge.deferred.Deferral(profile, connection, telemetry.recorder)
    agent = Agent.from_profile(profile, observers_for=deferral.observers_for)
    parts = deferral.parts                            # do-nothing parts without a classifier
    for service in parts.services: service.start()   # stop in reverse, then parts.close()
    parts.verdicts.get(request_id)                    # GET /v2/verdicts/{request_id}
"""

from __future__ import annotations

from edgecascade.edge.deferred.build import Deferral, DeferredParts, build
from edgecascade.edge.deferred.database import DeferredDatabase
from edgecascade.edge.deferred.observer import DeferredRecorder, is_deferrable
from edgecascade.edge.deferred.queue import DeferredQueue, QueuedCase
from edgecascade.edge.deferred.verdicts import Verdict, VerdictStore
from edgecascade.edge.deferred.worker import LateVerdictWorker

__all__ = [
    "DeferredDatabase",
    "Deferral",
    "DeferredParts",
    "DeferredQueue",
    "DeferredRecorder",
    "LateVerdictWorker",
    "QueuedCase",
    "Verdict",
    "VerdictStore",
    "build",
    "is_deferrable",
]
