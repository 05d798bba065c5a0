"""How a fleet command reaches its fleet: broker, identity, signing key and state folder, from
flags and EDGECASCADE_FLEET__* variables (flags derived from these fields, cloud/cli_settings.py).
Read-only commands (`fleet status`) never open the signing key."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from edgecascade.cloud.cli_settings import HostPort, MqttSecret, MqttString, split_host_port
from edgecascade.shared.topic_segments import TopicName

#: The section of `fleet ...` in the environment scheme: EDGECASCADE_FLEET__BROKER, ...
ENV_SECTION = "FLEET"


class FleetAccess(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    fleet: TopicName = Field("demo", description="Fleet name (MQTT topic prefix part).")
    broker: HostPort = Field("127.0.0.1:1883", description="MQTT broker HOST:PORT.")
    username: MqttString | None = Field(
        None, description="Fleet identity on the broker (only it may publish manifests)."
    )
    password: MqttSecret | None = Field(
        None, description="Broker password (prefer the variable: a flag shows in `ps`)."
    )
    tls_ca: Path | None = Field(None, description="CA certificate: connect with TLS.")
    protocol: int = Field(5, ge=4, le=5, description="MQTT 5 (5) or 3.1.1 (4).")
    key: Path = Field(
        Path("var/fleet/signing.key"),
        description="Ed25519 signing key (PEM); not read by read-only commands such as status.",
    )
    state_dir: Path = Field(Path("var/fleet"), description="Push history and manifests.")

    @property
    def host_port(self) -> tuple[str, int]:
        return split_host_port(self.broker)
