"""[mqtt]: the device's one broker connection (telemetry, model updates, requests, events)."""

from typing import TYPE_CHECKING, Literal

from pydantic import Field, SecretStr, field_validator

from edgecascade.edge.config.base import ProfilePath, Section

if TYPE_CHECKING:
    from edgecascade.shared.mqtt import MqttSettings


class MqttSection(Section):
    enabled: bool = Field(
        False, description="Connect to a broker at all; false = no telemetry uplink or updates."
    )
    host: str = Field("127.0.0.1", description="Broker host.")
    port: int = Field(1883, ge=1, le=65535, description="Broker port (8883 for TLS).")
    protocol: Literal[4, 5] = Field(5, description="MQTT 5 (5) or 3.1.1 (4).")
    username: str | None = Field(
        None, description="Per-device broker user (ACLs restrict it to its own topics)."
    )
    password: SecretStr | None = Field(
        None, description="Broker password (prefer EDGECASCADE_MQTT__PASSWORD)."
    )
    tls_ca: ProfilePath | None = Field(None, description="CA certificate; set to use TLS.")
    tls_cert: ProfilePath | None = Field(None, description="Client certificate (mutual TLS).")
    tls_key: ProfilePath | None = Field(None, description="Client key (mutual TLS).")
    keepalive_s: int = Field(30, ge=5, description="MQTT keepalive.")
    reconnect_max_s: float = Field(30.0, gt=0, description="Longest wait between reconnect attempts.")

    @field_validator("protocol", mode="before")
    @classmethod
    def _protocol_from_env(cls, value: object) -> object:
        # Environment overrides arrive as text ("5").
        return int(value) if isinstance(value, str) and value.strip().isdigit() else value

    def settings(
        self, client_id: str, presence_topic: str | None, max_packet_bytes: int | None = None
    ) -> "MqttSettings":
        from edgecascade.shared.mqtt import MqttSettings

        return MqttSettings(
            host=self.host,
            port=self.port,
            client_id=client_id,
            username=self.username,
            password=self.password.get_secret_value() if self.password else None,
            protocol=self.protocol,
            keepalive_s=self.keepalive_s,
            tls_ca=str(self.tls_ca) if self.tls_ca else None,
            tls_cert=str(self.tls_cert) if self.tls_cert else None,
            tls_key=str(self.tls_key) if self.tls_key else None,
            reconnect_max_s=self.reconnect_max_s,
            presence_topic=presence_topic,
            max_packet_bytes=max_packet_bytes,
        )
