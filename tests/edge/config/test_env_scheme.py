"""One environment scheme for every command: EDGECASCADE_<SECTION>__<KEY>; EDGECASCADE_CONFIG;
unknown variables warned about once and never fatal; errors name the variable (issue 13.5)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from edgecascade.cloud.cli_settings import load_settings
from edgecascade.cloud.fleet.access import FleetAccess
from edgecascade.cloud.ingest.settings import IngestSettings
from edgecascade.cloud.settings import ServerSettings, load_server_settings
from edgecascade.edge.config import load_profile
from edgecascade.shared.config_env import read_environment
from edgecascade.shared.errors import ConfigError
from tests.edge.config.support import clean_env, cli, write_profile


@pytest.fixture
def features(tmp_path: Path) -> Path:
    path = tmp_path / "features.json"
    path.write_text(json.dumps([0.0] * 64))
    return path


def test_edgecascade_config_names_the_default_profile(tmp_path: Path, features: Path) -> None:
    profile = write_profile(tmp_path)
    result = cli("agent", "predict", "--json", str(features), env=clean_env(EDGECASCADE_CONFIG=str(profile)))
    assert result.returncode == 0, result.stderr
    row = json.loads(result.stdout)
    assert row["input"] == str(features) and row["source"] == "edge"
    # --config wins over the variable.
    other = write_profile(tmp_path, name="other.toml")
    env = clean_env(EDGECASCADE_CONFIG=str(tmp_path / "absent.toml"))
    assert cli("agent", "predict", "-c", str(other), str(features), env=env).returncode == 0


def test_a_missing_profile_names_its_source(tmp_path: Path, features: Path) -> None:
    result = cli("agent", "run", env=clean_env(EDGECASCADE_CONFIG=str(tmp_path / "absent.toml")))
    assert result.returncode == 1
    assert (
        result.stderr.strip()
        == f"error: EDGECASCADE_CONFIG: profile file not found: {tmp_path / 'absent.toml'}"
    )
    result = cli("agent", "predict", str(features))
    assert result.returncode == 1
    assert result.stderr.strip() == "error: no profile: give --config PROFILE or set EDGECASCADE_CONFIG"


def test_another_commands_variable_is_not_fatal(tmp_path: Path, features: Path) -> None:
    # One environment file for the agent and the cloud server on the same box.
    profile = write_profile(tmp_path)
    env = clean_env(EDGECASCADE_SERVE__PORT="8000", EDGECASCADE_INGEST__STORE="x.sqlite3")
    result = cli("agent", "predict", "-c", str(profile), str(features), env=env)
    assert result.returncode == 0, result.stderr
    assert (
        "EDGECASCADE_SERVE__PORT is not a setting of `edgecascade agent`; ignored (read by "
        "`edgecascade cloud serve`)" in result.stderr
    )
    assert "(read by `edgecascade cloud ingest`)" in result.stderr


def test_profile_variables_lists_and_nested_sections(tmp_path: Path) -> None:
    env = {
        "EDGECASCADE_GROUPS": '["store-12", "pi"]',
        "EDGECASCADE_TELEMETRY__HARD_EXAMPLES__ENABLED": "true",
        "EDGECASCADE_CASCADE__POLICIES": '[{"kind": "margin", "threshold": 0.2}]',
        "EDGECASCADE_MQTT__PORT": "8883",
    }
    profile = load_profile(write_profile(tmp_path), environ=env)
    assert profile.groups == ["store-12", "pi"]
    assert profile.telemetry.hard_examples.enabled is True
    assert [(p.kind, p.threshold) for p in profile.cascade.policies] == [("margin", 0.2)]
    assert profile.mqtt.port == 8883
    with pytest.raises(ConfigError) as info:
        load_profile(write_profile(tmp_path), environ={"EDGECASCADE_GROUPS": "store-12"})
    assert info.value.key == "EDGECASCADE_GROUPS" and "Input should be a valid list" in str(info.value)
    with pytest.raises(ConfigError, match=r"EDGECASCADE_CASCADE__POLICIES\[0\.threshold\]: Input should be"):
        load_profile(
            write_profile(tmp_path),
            environ={"EDGECASCADE_CASCADE__POLICIES": '[{"kind": "margin", "threshold": 2}]'},
        )


def test_unknown_variables_are_warned_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    env = {"EDGECASCADE_RUNTIME__THREDS": "4", "EDGECASCADE_CONFIG": "ignored-here"}
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            profile = load_profile(write_profile(tmp_path), environ=env)
    assert profile.runtime.threads == 1
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "EDGECASCADE_RUNTIME__THREDS is not a setting of `edgecascade agent`; ignored "
        "(did you mean EDGECASCADE_RUNTIME__THREADS?)"
    ]


def test_cloud_serve_reads_its_section(tmp_path: Path) -> None:
    env = {
        "EDGECASCADE_SERVE__PORT": "9001",
        "EDGECASCADE_SERVE__NO_AUTH": "true",
        "EDGECASCADE_SERVE__TOKENS": "a=b",
    }
    settings = load_server_settings({"repository": str(tmp_path)}, environ=env)
    assert settings.port == 9001 and settings.no_auth is True
    assert settings.tokens is not None and settings.tokens.get_secret_value() == "a=b"
    # A flag given wins over its variable; its error names the flag.
    assert load_server_settings({"repository": str(tmp_path), "port": "9002"}, environ=env).port == 9002
    with pytest.raises(ConfigError) as info:
        load_server_settings({"repository": str(tmp_path), "port": "-1"}, environ=env)
    assert info.value.key == "--port"
    # Every setting has exactly one variable in the one scheme.
    known = read_environment(ServerSettings, {}, section="SERVE").known
    assert known == sorted(f"EDGECASCADE_SERVE__{name.upper()}" for name in ServerSettings.model_fields)


def test_ingest_and_fleet_read_their_sections(tmp_path: Path) -> None:
    env = {
        "EDGECASCADE_INGEST__STORE": "t.sqlite3",
        "EDGECASCADE_INGEST__PASSWORD": "pw",
        "EDGECASCADE_INGEST__PROTOCOL": "4",
    }
    ingest = load_settings(IngestSettings, {}, section="INGEST", command="ingest", environ=env)
    assert ingest.store == "t.sqlite3" and ingest.protocol == 4
    assert ingest.password is not None and ingest.password.get_secret_value() == "pw"
    env = {"EDGECASCADE_FLEET__BROKER": "mqtt.example:8883", "EDGECASCADE_FLEET__FLEET": "north"}
    access = load_settings(FleetAccess, {"fleet": "south"}, section="FLEET", command="fleet", environ=env)
    assert access.host_port == ("mqtt.example", 8883) and access.fleet == "south"


@pytest.mark.parametrize(
    ("name", "hint"),
    [
        ("EDGECASCADE_MQT__HOST", "(did you mean EDGECASCADE_MQTT__HOST?)"),
        ("EDGECASCADE_DEVICEID", "(did you mean EDGECASCADE_DEVICE_ID?)"),
        ("EDGECASCADE_FLEET__PASSWORD", "(read by `edgecascade fleet`)"),
        (
            "EDGECASCADE_MQTT_PASSWORD",
            "(did you mean EDGECASCADE_MQTT__PASSWORD? `edgecascade cloud ingest` reads it as "
            "EDGECASCADE_INGEST__PASSWORD)",
        ),
        ("EDGECASCADE_ZZZ", "ignored"),
    ],
)
def test_unknown_variable_hints(name: str, hint: str) -> None:
    from edgecascade.edge.config import DeviceProfile
    from edgecascade.shared.config_env import unknown_hint

    known = read_environment(DeviceProfile, {}).known
    text = unknown_hint(name, known, "edgecascade agent")
    assert text == f"{name} is not a setting of `edgecascade agent`; ignored" + (
        f" {hint}" if hint != "ignored" else ""
    )


def test_a_mistyped_section_suggests_the_section(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_profile(write_profile(tmp_path, "[mqt]\nhost = 'broker'\n"), environ={})
    assert info.value.key == "mqt"
    assert "mqt: unknown key (not a setting here); did you mean mqtt?" in str(info.value)
    with pytest.raises(ConfigError, match=r"telemetry\.hard_examples\.enabeld: unknown key .*did you mean "
                       r"telemetry\.hard_examples\.enabled\?"):  # fmt: skip
        load_profile(write_profile(tmp_path, "[telemetry.hard_examples]\nenabeld = true\n"), environ={})
