"""Files a profile names (TLS CA, client certificate and key, token and key files) are checked at
start-up: a clear ConfigError naming the key and the path, not a paho traceback later."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgecascade.cloud.cli_settings import load_settings
from edgecascade.cloud.fleet.access import FleetAccess
from edgecascade.edge.config import load_profile
from edgecascade.shared.errors import ConfigError
from tests.edge.config.support import cli, write_profile


def test_missing_mqtt_ca_names_key_and_path(tmp_path: Path) -> None:
    profile = write_profile(tmp_path, '[mqtt]\nenabled = true\ntls_ca = "certs/ca.pem"\n')
    with pytest.raises(ConfigError) as info:
        load_profile(profile, environ={})
    assert info.value.file == str(profile) and info.value.key == "mqtt.tls_ca"
    assert str(info.value) == f"{profile}: mqtt.tls_ca: file not found: {tmp_path / 'certs' / 'ca.pem'}"


def test_each_tls_file_is_checked_and_a_variable_is_named(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("ca")
    (tmp_path / "client.pem").write_text("cert")
    (tmp_path / "keys").mkdir()
    body = '[mqtt]\nenabled = true\ntls_ca = "ca.pem"\ntls_cert = "client.pem"\ntls_key = "keys"\n'
    with pytest.raises(ConfigError, match=r"mqtt\.tls_key: file is a folder: "):
        load_profile(write_profile(tmp_path, body), environ={})
    env = {"EDGECASCADE_MQTT__TLS_CERT": str(tmp_path / "gone.pem")}
    with pytest.raises(ConfigError) as info:
        load_profile(write_profile(tmp_path, body), environ=env)
    assert info.value.key == "EDGECASCADE_MQTT__TLS_CERT" and info.value.file is None
    assert str(info.value) == f"EDGECASCADE_MQTT__TLS_CERT: file not found: {tmp_path / 'gone.pem'}"
    (tmp_path / "client.key").write_text("key")
    ok = load_profile(write_profile(tmp_path, body), environ={"EDGECASCADE_MQTT__TLS_KEY": "client.key"})
    assert ok.mqtt.tls_key == (tmp_path / "client.key").resolve()  # relative to the profile file


def test_files_of_switched_off_sections_are_not_needed(tmp_path: Path) -> None:
    body = (
        '[mqtt]\nenabled = false\ntls_ca = "absent-ca.pem"\n'
        '[updates]\nenabled = false\npublic_key_file = "absent.pub"\n'
        '[cloud]\ntoken_file = "absent.token"\n'  # no url: offline, the token is never read
    )
    assert load_profile(write_profile(tmp_path, body), environ={}).mqtt.tls_ca is not None
    body = '[cloud]\nurl = "http://127.0.0.1:9"\ntoken_file = "absent.token"\n'
    with pytest.raises(ConfigError, match=r"cloud\.token_file: file not found: "):
        load_profile(write_profile(tmp_path, body), environ={})


def test_agent_run_refuses_a_missing_ca_without_a_traceback(tmp_path: Path) -> None:
    profile = write_profile(tmp_path, '[mqtt]\nenabled = true\ntls_ca = "ca.pem"\n[api]\nenabled = false\n')
    result = cli("agent", "run", "-c", str(profile), timeout=60)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: {profile}: mqtt.tls_ca: file not found: {tmp_path / 'ca.pem'}"
    )
    assert "Traceback" not in result.stderr


def test_fleet_tls_ca_is_checked_and_names_the_flag(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(
            FleetAccess, {"tls_ca": str(tmp_path / "ca.pem")}, section="FLEET", command="fleet", environ={}
        )
    assert str(info.value) == f"--tls-ca: file not found: {tmp_path / 'ca.pem'}"
