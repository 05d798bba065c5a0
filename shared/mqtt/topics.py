"""Every MQTT topic edgecascade uses, defined once. Payload schemas live beside their users
in shared/ (telemetry, manifest, ...)."""

from __future__ import annotations

from dataclasses import dataclass

ROOT = "edgecascade"


@dataclass(frozen=True)
class Topics:
    """Topic names for one fleet (and, for device topics, one device)."""

    fleet: str

    # --- per device, written by the device ---
    def presence(self, device: str) -> str:
        """Retained "online"/"offline" (the offline one is the MQTT will)."""
        return f"{ROOT}/{self.fleet}/{device}/presence"

    def telemetry(self, device: str) -> str:
        return f"{ROOT}/{self.fleet}/{device}/telemetry"

    def events(self, device: str) -> str:
        """Camera/video detections, published like an NVR's events."""
        return f"{ROOT}/{self.fleet}/{device}/events"

    def verdicts(self, device: str) -> str:
        """Late cloud verdicts for deferred hard cases."""
        return f"{ROOT}/{self.fleet}/{device}/verdicts"

    def update_status(self, device: str, model: str) -> str:
        """Retained update state of one model the device serves (each model has its own)."""
        return f"{ROOT}/{self.fleet}/{device}/status/{model}"

    def legacy_update_status(self, device: str) -> str:
        """The one status topic of agents before per-model updates: read by the fleet manager
        during a fleet upgrade, cleared by an upgraded device."""
        return f"{ROOT}/{self.fleet}/{device}/status"

    def table_status(self, device: str, model: str | None = None) -> str:
        """Retained lookup-table update state of the device's default lookup model, or of
        `model`'s table (one level below)."""
        base = f"{ROOT}/{self.fleet}/{device}/table-status"
        return base if model is None else f"{base}/{model}"

    # --- inference requests: an application asks a device, the device answers ---
    # The shipped ACL (firmware-configs/mosquitto/acl) lets an application identity write
    # requests/<its name> of the devices granted to it and read replies/<its name>/...; a device
    # reads its own requests and writes only under its own replies.
    def requests(self, device: str) -> str:
        """The device's bare request topic (the fleet identity may write it)."""
        return f"{ROOT}/{self.fleet}/{device}/requests"

    def request_filter(self, device: str) -> str:
        """What the device subscribes to: its bare request topic and every application's."""
        return f"{ROOT}/{self.fleet}/{device}/requests/#"

    def request_from(self, device: str, app: str) -> str:
        """Where application identity `app` publishes its requests to `device`."""
        return f"{ROOT}/{self.fleet}/{device}/requests/{app}"

    def reply_to(self, device: str, app: str) -> str:
        """The reply topic `app` names in its requests (MQTT 5 Response Topic or
        parameters.reply_to); `app` may also use sub-topics of it."""
        return f"{ROOT}/{self.fleet}/{device}/replies/{app}"

    def telemetry_ack(self, device: str) -> str:
        """What the ingester has stored of the device's telemetry (written by the ingester only):
        the device deletes a record from its buffer when this names it, never on a PUBACK."""
        return f"{ROOT}/{self.fleet}/{device}/telemetry-ack"

    # --- model manifests (retained), read by devices, written by the fleet manager ---
    # One retained manifest per model and level: a push of one model never replaces another's.
    def manifest_device(self, model: str, device: str) -> str:
        return f"{ROOT}/{self.fleet}/models/{model}/device/{device}"

    def manifest_group(self, model: str, group: str) -> str:
        return f"{ROOT}/{self.fleet}/models/{model}/group/{group}"

    def manifest_all(self, model: str) -> str:
        return f"{ROOT}/{self.fleet}/models/{model}/all"

    def artifact_chunks(self, model: str, version: str) -> str:
        """Chunked artifact delivery over MQTT (one message per numbered chunk)."""
        return f"{ROOT}/{self.fleet}/artifacts/{model}/{version}"

    # --- lookup-table manifests (retained): apart from models so neither replaces the other ---
    # A table for a named served model has its own topics (tables/model/<model>/...), so pushes
    # for two models never replace each other's retained manifest; `model` None is the topics of
    # manifests that name no model (the device's default lookup model).
    def _tables(self, model: str | None) -> str:
        return f"{ROOT}/{self.fleet}/tables" if model is None else f"{ROOT}/{self.fleet}/tables/model/{model}"

    def table_manifest_device(self, device: str, model: str | None = None) -> str:
        return f"{self._tables(model)}/device/{device}"

    def table_manifest_group(self, group: str, model: str | None = None) -> str:
        return f"{self._tables(model)}/group/{group}"

    def table_manifest_all(self, model: str | None = None) -> str:
        return f"{self._tables(model)}/all"

    def table_chunks(self, name: str, version: str) -> str:
        """Chunked table delivery over MQTT (one message per numbered chunk)."""
        return f"{ROOT}/{self.fleet}/artifacts/tables/{name}/{version}"

    # --- wildcards for cloud-side subscribers ---
    def all_telemetry(self) -> str:
        return f"{ROOT}/{self.fleet}/+/telemetry"

    def all_status(self) -> str:
        """Every device's per-model update status."""
        return f"{ROOT}/{self.fleet}/+/status/+"

    def all_legacy_status(self) -> str:
        """Every older device's single update status (see legacy_update_status)."""
        return f"{ROOT}/{self.fleet}/+/status"

    def all_table_status(self) -> str:
        return f"{ROOT}/{self.fleet}/+/table-status"

    def all_model_table_status(self) -> str:
        """The per-model table statuses (table_status(device, model)) of every device."""
        return f"{ROOT}/{self.fleet}/+/table-status/+"

    def all_presence(self) -> str:
        return f"{ROOT}/{self.fleet}/+/presence"

    @staticmethod
    def device_of(topic: str) -> str | None:
        """The device id in a per-device topic, or None for other topics."""
        parts = topic.split("/")
        if len(parts) == 4 and parts[0] == ROOT and parts[2] not in ("models", "tables", "artifacts"):
            return parts[2]
        return None
