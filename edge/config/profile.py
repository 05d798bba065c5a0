"""The device profile: the root of an agent's configuration (one TOML file per device kind)."""

from typing import Any, Self

from pydantic import Field, field_validator, model_validator

from edgecascade.edge.config.base import DeviceId, ProfilePath, Section, TopicName
from edgecascade.edge.config.camera import CameraSection
from edgecascade.edge.config.cascade import CascadeSection
from edgecascade.edge.config.cloud import CloudSection
from edgecascade.edge.config.daemon import ApiSection, DaemonSection
from edgecascade.edge.config.deferred import DeferredSection
from edgecascade.edge.config.lookup import LookupSection
from edgecascade.edge.config.models import ModelEntry
from edgecascade.edge.config.mqtt import MqttSection
from edgecascade.edge.config.runtime import ModelSection, RuntimeSection
from edgecascade.edge.config.telemetry import TelemetrySection
from edgecascade.edge.config.updates import UpdatesSection


class DeviceProfile(Section):
    """One device's configuration. Files live in firmware-configs/; see load_profile()."""

    profile: str = Field(description="Profile name, e.g. raspberry-pi-4; manifests list compatible profiles.")
    device_id: DeviceId = Field(
        "dev-0001",
        description="Unique device id, one MQTT topic level: no / + #, no leading $, not a topic "
        "word such as models or all (override: EDGECASCADE_DEVICE_ID).",
    )
    fleet: TopicName = Field("demo", description="Fleet name, one MQTT topic level.")
    groups: list[TopicName] = Field(
        default_factory=list,
        max_length=64,
        description="Fleet groups this device belongs to (each one MQTT topic level, one "
        "subscription each; at most 64, no repeats).",
    )
    data_dir: ProfilePath = Field(description="Writable folder for buffers, caches and updated models.")
    memory_budget_mb: int = Field(gt=0, description="Peak RSS the agent must stay under, in MiB.")
    runtime: RuntimeSection = Field(default_factory=RuntimeSection)
    model: ModelSection = Field(
        description="The single served model (or, with [[models]], the first one: filled in from it)."
    )
    models: list[ModelEntry] = Field(
        default_factory=list, description="Several served models, each with its own settings; see ModelEntry."
    )
    cascade: CascadeSection = Field(default_factory=CascadeSection)
    cloud: CloudSection = Field(default_factory=CloudSection)
    api: ApiSection = Field(default_factory=ApiSection)
    daemon: DaemonSection = Field(default_factory=DaemonSection)
    mqtt: MqttSection = Field(default_factory=MqttSection)
    lookup: LookupSection = Field(default_factory=LookupSection)
    telemetry: TelemetrySection = Field(default_factory=TelemetrySection)
    updates: UpdatesSection = Field(default_factory=UpdatesSection)
    camera: CameraSection = Field(default_factory=CameraSection)
    deferred: DeferredSection = Field(default_factory=DeferredSection)

    @model_validator(mode="before")
    @classmethod
    def _model_from_models(cls, data: Any) -> Any:
        # With [[models]] and no [model], the first entry is the default model (requests and tools
        # that name none address it).
        if isinstance(data, dict) and "model" not in data and data.get("models"):
            first = data["models"][0]
            if isinstance(first, dict):
                data = {**data, "model": {k: first[k] for k in ("name", "path", "backend") if k in first}}
        return data

    @field_validator("groups")
    @classmethod
    def _groups_once(cls, groups: list[str]) -> list[str]:
        repeated = sorted({g for g in groups if groups.count(g) > 1})
        if repeated:
            raise ValueError(f"groups {repeated} appear more than once")
        return groups

    @model_validator(mode="after")
    def _unique_names(self) -> Self:
        names = [m.name for m in self.models]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"models: names must be unique, {dupes} appear more than once")
        first = self.models[0] if self.models else None
        if first is not None and (first.name, first.path) != (self.model.name, self.model.path):
            raise ValueError(
                f"[model] ({self.model.name!r}) and the first [[models]] entry ({first.name!r}) differ; "
                "use [[models]] alone (its first entry is the default model)"
            )
        return self

    def model_entries(self) -> list[ModelEntry]:
        """The served models in order; the first is the default model of every front end."""
        if self.models:
            return list(self.models)
        return [
            ModelEntry(
                name=self.model.name,
                path=self.model.path,
                backend=self.model.backend,
                cascade=self.cascade,
                cloud_model=self.cloud.model,
            )
        ]
