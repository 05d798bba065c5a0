"""Device ids, fleet and group names become MQTT topic levels: they are checked as such."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from edgecascade.edge.config import load_profile
from edgecascade.shared.errors import ConfigError
from edgecascade.shared.mqtt.topics import ROOT, Topics
from edgecascade.shared.topic_segments import RESERVED_SEGMENTS
from tests.edge.config.support import write_profile


@pytest.mark.parametrize(
    ("device_id", "why"),
    [
        ("a/b", "must not contain a '/'"),
        ("x+#", "must not contain a '+' (an MQTT wildcard)"),
        ("dev#1", "must not contain a '#'"),
        ("models", "'models' is a topic word edgecascade uses"),
        ("ALL", "'ALL' is a topic word edgecascade uses"),
        ("", "must not be empty"),
        ("d" * 300, "at most 128 bytes, got 300"),
        ("$SYS", "must not start with '$'"),
        ("dev\x001", "must not contain control characters"),
        (" dev", "must not start or end with whitespace"),
        ("pi-\u200b7", "must not contain the invisible or control character U+200B (ZERO WIDTH SPACE)"),
        ("pi-\u202e7ip", "U+202E (RIGHT-TO-LEFT OVERRIDE)"),
        ("pi-\x9b7", "U+009B"),
        ("pi\u20287", "U+2028 (LINE SEPARATOR)"),
    ],
    ids=[
        "slash",
        "wildcards",
        "hash",
        "models",
        "all",
        "empty",
        "300-chars",
        "dollar",
        "nul",
        "space",
        "zero-width",
        "bidi-override",
        "c1-control",
        "line-separator",
    ],  # fmt: skip
)
def test_unsafe_device_ids_are_refused(tmp_path: Path, device_id: str, why: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_profile(write_profile(tmp_path), environ={"EDGECASCADE_DEVICE_ID": device_id})
    assert info.value.key == "EDGECASCADE_DEVICE_ID"
    assert why in str(info.value)


def test_fleet_and_groups_are_single_topic_levels(tmp_path: Path) -> None:
    path = write_profile(tmp_path, top='fleet = "f+"\n')
    with pytest.raises(
        ConfigError, match=r": fleet: invalid profile:\n  fleet: Value error, must not contain a '\+'"
    ):
        load_profile(path, environ={})
    with pytest.raises(ConfigError, match=r"EDGECASCADE_GROUPS\[1\]: Value error, must not contain a '/'"):
        load_profile(write_profile(tmp_path), environ={"EDGECASCADE_GROUPS": '["ok", "a/b"]'})


def test_ordinary_ids_pass(tmp_path: Path) -> None:
    for device_id in ("rpi4-0001", "store_12.kiosk-3", "d" * 128, "café-1"):
        profile = load_profile(write_profile(tmp_path), environ={"EDGECASCADE_DEVICE_ID": device_id})
        assert profile.device_id == device_id


def test_reserved_words_cover_every_fixed_topic_level() -> None:
    # Every literal level Topics builds (besides the root and the fleet) is a reserved word.
    topics = Topics("FLEET")
    levels: set[str] = set()
    for name, method in inspect.getmembers(topics, inspect.ismethod):
        if name.startswith("_"):
            continue
        arguments = ["ARG"] * (len(inspect.signature(method).parameters))
        levels.update(method(*arguments).split("/"))
    fixed = levels - {ROOT, "FLEET", "ARG", "+", "#"}
    assert fixed and fixed <= RESERVED_SEGMENTS, fixed - RESERVED_SEGMENTS


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("a/b", "must not contain a '/'"),
        ("m+", "must not contain a '+' (an MQTT wildcard)"),
        ("m#", "must not contain a '#'"),
        ("..", "must not start with '.'"),
        ("$x", "must not start with '$'"),
        ("", "must not be empty"),
        ("m" * 300, "at most 128 bytes, got 300"),
        ("m\x00", "must not contain control characters"),
    ],
    ids=["slash", "plus", "hash", "dotdot", "dollar", "empty", "300-chars", "nul"],
)
def test_unsafe_model_names_are_refused(tmp_path: Path, name: str, why: str) -> None:
    # A model name is a level of its manifest and status topics and a folder on the device.
    with pytest.raises(ConfigError) as info:
        load_profile(write_profile(tmp_path), environ={"EDGECASCADE_MODEL__NAME": name})
    assert info.value.key == "EDGECASCADE_MODEL__NAME"
    assert why in str(info.value)
