"""[deferred]: queue hard cases the cloud could not answer, and deliver late verdicts."""

from typing import Literal

from pydantic import Field

from edgecascade.edge.config.base import ProfilePath, Section


class DeferredSection(Section):
    enabled: bool = Field(
        True,
        description="Queue degraded hard cases (cloud offline, breaker open, over budget) on the device "
        "and send them when the cloud is back; each answer is delivered as a late verdict.",
    )
    path: ProfilePath | None = Field(
        None,
        description="SQLite file holding the queue and the verdicts; default <data_dir>/deferred.sqlite3.",
    )
    max_cases: int = Field(
        10_000, ge=1, description="Queue bound in cases; beyond it the oldest are dropped."
    )
    max_bytes: int = Field(
        16 * 1024 * 1024,
        ge=4096,
        description="Queue bound in bytes of stored inputs; beyond it drop the oldest.",
    )
    max_age_s: float = Field(
        24 * 3600.0,
        gt=0,
        description="Cases queued longer than this are dropped (counted), in seconds of the agent's "
        "running time: a wall-clock step (NTP on a board without a real-time clock) ages none.",
    )
    keep_raw: bool = Field(
        False,
        description="Also queue the raw input; used only when cloud.send_raw_input is true too. By default "
        "only the encoded features are kept.",
    )
    order: Literal["oldest", "most_uncertain"] = Field(
        "oldest",
        description="Which queued case is sent first: the oldest, or the least confident edge answer.",
    )
    rate_per_s: float = Field(
        5.0, gt=0, description="At most this many queued cases are sent to the cloud per second."
    )
    retry_interval_s: float = Field(
        2.0,
        gt=0,
        description="After a failed send (or with the breaker open) wait this long before the next probe.",
    )
    max_attempts: int = Field(
        10, ge=1, description="A case the cloud rejects (bad response) this many times is dropped (counted)."
    )
    flush_interval_ms: int = Field(
        50,
        ge=1,
        le=5000,
        description="Queued cases are committed at least this often (as the telemetry buffer does): a crash "
        "loses at most the cases that arrived in this window.",
    )
    synchronous: Literal["full", "normal"] = Field(
        "full", description="SQLite WAL sync: full = a commit survives a power cut; normal = a process crash."
    )
    publish_timeout_s: float = Field(
        5.0, gt=0, description="Wait this long for a verdict's PUBACK before trying again later."
    )
    max_verdicts: int = Field(
        10_000,
        ge=1,
        description="Verdicts kept for the local API; the oldest delivered ones are pruned beyond this.",
    )
    verdict_ttl_s: float = Field(
        7 * 24 * 3600.0, gt=0, description="Delivered verdicts older than this are pruned, in seconds."
    )
