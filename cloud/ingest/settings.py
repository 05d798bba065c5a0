"""Settings of `edgecascade cloud ingest`, from flags and EDGECASCADE_INGEST__* variables; the
flags are derived from these fields (cloud/cli_settings.py), never declared twice."""

from __future__ import annotations

import socket
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from edgecascade.cloud.cli_settings import HostPort, MqttSecret, MqttString, split_host_port
from edgecascade.shared.telemetry import MAX_PAYLOAD_BYTES
from edgecascade.shared.topic_segments import TopicName, check_segment

#: Longest pause between counter lines: threading's waits overflow past ~292 years
#: (OverflowError), and a day between lines already says little.
MAX_STATS_EVERY_S = 86_400.0


def _group(value: str) -> str:
    # The group is one level of the shared subscription `$share/<group>/...`; "" = none.
    return check_segment(value) if value else value


#: A shared-subscription group: one topic level, or "" for a plain subscription.
GroupName = Annotated[str, AfterValidator(_group)]

#: The section of `cloud ingest` in the environment scheme: EDGECASCADE_INGEST__STORE, ...
ENV_SECTION = "INGEST"


class IngestSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    store: str = Field(description="SQLite file (or sqlite:///path), or a postgresql:// URL.")
    broker: HostPort = Field("127.0.0.1:1883", description="MQTT broker HOST:PORT.")
    fleet: TopicName = Field("demo", description="Fleet name in the topics.")
    group: GroupName = Field(
        "",
        description="MQTT 5 shared-subscription group, to share the load among several ingesters. Default: "
        "none, a plain subscription, which the broker queues while this ingester is away (Mosquitto 2.0 "
        "does not queue a shared subscription for an offline member).",
    )
    client_id: MqttString = Field(
        default_factory=lambda: f"ingest-{socket.gethostname()}",
        description="Fixed MQTT client id: the broker keeps this ingester's session across restarts.",
    )
    protocol: int = Field(5, ge=4, le=5, description="MQTT 5 (5) or 3.1.1 (4).")
    username: MqttString | None = Field(None, description="Broker user.")
    password: MqttSecret | None = Field(
        None, description="Broker password (prefer the variable: a flag shows in `ps`)."
    )
    max_payload_kb: int = Field(
        MAX_PAYLOAD_BYTES // 1024, ge=1, description="Refuse telemetry messages larger than this, in KiB."
    )
    stats_every: float = Field(
        60.0, gt=0, le=MAX_STATS_EVERY_S, description="Log counters every this many seconds."
    )

    @property
    def host_port(self) -> tuple[str, int]:
        return split_host_port(self.broker)
