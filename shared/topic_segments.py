"""Names that become one MQTT topic level (device ids, fleet and group names): checked once here.

A device id of `a/b` adds a topic level, `x+#` is a wildcard that cannot be published to, and
`models` would put a device's topics among the fleet's manifest topics
(edgecascade/<fleet>/models/...). No paho import here: the profile is validated without MQTT."""

from __future__ import annotations

from typing import Annotated

from pydantic.functional_validators import AfterValidator

#: Topic levels shared/mqtt/topics.py uses beside or below a device id; a device may not be named so
#: (tests/edge/config/test_device_ids.py checks this list against Topics).
RESERVED_SEGMENTS = frozenset(
    {
        "models",
        "tables",
        "model",
        "artifacts",
        "device",
        "group",
        "all",
        "presence",
        "telemetry",
        "events",
        "verdicts",
        "status",
        "table-status",
        "requests",
        "replies",
        "telemetry-ack",
    }
)

#: Longest topic level accepted; MQTT allows 65,535 bytes per topic, brokers and ACLs far fewer.
MAX_SEGMENT_BYTES = 128

_FORBIDDEN = {
    "/": "a '/' (it adds a topic level)",
    "+": "a '+' (an MQTT wildcard)",
    "#": "a '#' (an MQTT wildcard)",
}


def check_segment(value: str, *, reserved: bool = False) -> str:
    """Return `value` if it can be one topic level; else raise ValueError saying why.
    With `reserved`, the topic words of RESERVED_SEGMENTS are refused too (device ids)."""
    if not value:
        raise ValueError("must not be empty")
    if len(value.encode("utf-8")) > MAX_SEGMENT_BYTES:
        raise ValueError(f"at most {MAX_SEGMENT_BYTES} bytes, got {len(value.encode('utf-8'))}")
    for char, why in _FORBIDDEN.items():
        if char in value:
            raise ValueError(f"must not contain {why}")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise ValueError("must not contain control characters (NUL, newline, ...)")
    if not value.isascii():
        _check_visible(value)
    if value.startswith("$"):
        raise ValueError("must not start with '$' (brokers reserve such topics, e.g. $SYS)")
    if value != value.strip():
        raise ValueError("must not start or end with whitespace")
    if reserved and value.lower() in RESERVED_SEGMENTS:
        raise ValueError(f"{value!r} is a topic word edgecascade uses; choose another name")
    return value


def _check_visible(value: str) -> None:
    # C1 controls, bidi overrides, zero-width and line-separator characters: invisible or
    # reordering in a fleet manager's terminal, so two ids could look alike ("pi-7" and
    # "pi-\u200b7") or one could read as another (U+202E reverses what follows).
    import unicodedata  # only for names that are not plain ASCII

    for c in value:
        if unicodedata.category(c) in ("Cc", "Cf", "Co", "Cs", "Cn", "Zl", "Zp"):
            raise ValueError(
                f"must not contain the invisible or control character U+{ord(c):04X} "
                f"({unicodedata.name(c, 'unnamed')})"
            )


def check_model_name(value: str) -> str:
    """Return `value` if it can name a model: one topic level (its manifest and status topics
    carry it) and one folder on the device (`<data_dir>/models/<name>/`); else ValueError."""
    check_segment(value)
    if value.startswith("."):
        raise ValueError("must not start with '.' (it names the model's folder on the device)")
    return value


def _device_id(value: str) -> str:
    return check_segment(value, reserved=True)


#: A device id in a typed config: one topic level, not a topic word of RESERVED_SEGMENTS.
DeviceId = Annotated[str, AfterValidator(_device_id)]

#: A fleet or group name in a typed config: one topic level.
TopicName = Annotated[str, AfterValidator(check_segment)]

#: A model name in a typed config: see check_model_name.
ModelName = Annotated[str, AfterValidator(check_model_name)]
