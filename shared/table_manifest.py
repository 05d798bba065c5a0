"""The signed lookup-table manifest and the device's table status.

Tables travel like models (same Blob/Delta delivery, same Ed25519 signing, see shared/manifest.py)
but on their own retained topics (Topics.table_manifest_*), so a table push never replaces the
model manifest a device reads, nor the other way round.

Every classifier a device serves has its own table. A manifest names the served model its table
is for (`model`, a [[models]] name) and travels on that model's topics, so a push for one model
never replaces another's retained manifest; `model` unset (manifests from before per-model
tables) means the device's default lookup model, on the topics without a model level."""

import re
from typing import Literal

from pydantic import Field, field_validator

from edgecascade.shared.manifest import (
    MANIFEST_SCHEMA,
    ROUTE_PATTERN,
    Blob,
    Delta,
    UpdateState,
    _Signed,
    _Strict,
)
from edgecascade.shared.topic_segments import TopicName

#: A version becomes a directory name on the device: plain names only.
_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,99}$")


class TableManifest(_Signed):
    """One lookup-table version for some devices, built from the table's own header."""

    schema_version: int = Field(MANIFEST_SCHEMA, description="Manifest schema version.")
    kind: Literal["table"] = Field("table", description="What the manifest carries: a lookup table.")
    fleet: str = Field(description="Fleet name.")
    name: str = Field(description="Table name (from the table header).")
    model: TopicName | None = Field(
        None,
        description="The device model ([[models]] name) whose table this is; unset = each device's "
        "first model with lookups.",
    )
    version: str = Field(description="Table version (from the header); answers report it as table_version.")
    file_name: str = Field(description="Table file name on the device.")
    cloud_model: str = Field(description="Cloud model that computed the table's answers.")
    cloud_model_version: str = Field(description="Version of that cloud model.")
    encoding_version: int = Field(description="Feature-encoding version the table's keys were built with.")
    key_scheme: Literal["content", "application"] = Field(description="How the table is keyed.")
    entries: int = Field(ge=0, description="Number of entries.")
    min_agent_version: str = Field(description="Oldest agent version that can read this table.")
    profiles: list[str] = Field(default_factory=list, description="Compatible device profiles; empty = any.")
    route: str = Field(
        pattern=ROUTE_PATTERN, description="Delivery route for the table file (a transport name)."
    )
    artifact: Blob = Field(description="The full table file.")
    delta: Delta | None = Field(None, description="Optional bsdiff delta against a named base table version.")
    target: str = Field(description="device:ID, group:G or all; signed, checked by the device.")
    push_id: str = Field(description="Unique id of the push (a rollback is a new push).")
    rollback_of: str | None = Field(None, description="Version this push rolls back, if it is a rollback.")
    issued_at: float = Field(description="Unix time the manifest was signed.")

    @field_validator("version", "file_name")
    @classmethod
    def _plain_name(cls, value: str) -> str:
        if not _VERSION.match(value) or value == "active":
            raise ValueError(f"{value!r} is not a plain name (letters, digits, . _ + -)")
        return value


class TableStatus(_Strict):
    """The device's retained table status (topic Topics.table_status)."""

    device: str = Field(description="Device id.")
    groups: list[str] = Field(default_factory=list, description="Groups the device belongs to.")
    model: str | None = Field(
        None, description="The device model whose table this is; None = the default lookup model."
    )
    table: str | None = Field(None, description="Name of the table serving now; None = no table.")
    active_version: str | None = Field(None, description="Table version serving now; None = no table.")
    state: UpdateState = Field(description="Table update state: idle, downloading, ..., rolled_back.")
    target_version: str | None = Field(None, description="Version being applied, if any.")
    push_id: str | None = Field(None, description="Push the state refers to.")
    progress: float | None = Field(None, description="Download progress 0..1 while downloading.")
    reason: str | None = Field(None, description="Why it failed or was refused.")
    bytes_received: int = Field(0, description="Bytes received for the current update.")
    refused_manifests: int = Field(
        0,
        description="Table manifests refused unapplied since start (garbage, forged, replayed, not for it).",
    )
    last_refusal: str | None = Field(None, description="Why the latest refused table manifest was refused.")
    updated_at: float = Field(description="Unix time of this status.")
