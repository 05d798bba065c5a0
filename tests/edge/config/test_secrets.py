"""Secrets are never echoed: typos and wrong types fed to the real CLIs (subprocesses) name the
key or the variable, suggest the known one, and never print the secret value (issue 14.12)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.edge.config.support import clean_env, cli, write_profile

SECRET = "S3CRET-typo-1"


def _assert_hidden(result, *names: str) -> str:  # type: ignore[no-untyped-def]
    out = result.stdout + result.stderr
    assert SECRET not in out, out
    for name in names:
        assert name in out, out
    return out


@pytest.mark.parametrize(
    ("body", "key", "suggestion"),
    [
        (
            f'[cloud]\nurl = "http://127.0.0.1:9"\ntokn = "{SECRET}"\n',
            "cloud.tokn",
            "did you mean cloud.token?",
        ),
        (f'[mqtt]\npasword = "{SECRET}"\n', "mqtt.pasword", "did you mean mqtt.password?"),
        (f'[updates]\npublic_kee = "{SECRET}"\n', "updates.public_kee", "did you mean updates.public_key?"),
        # Nothing close: no suggestion, and still no value (it follows [runtime] in the file).
        (f'secret_sauce = "{SECRET}"\n', "runtime.secret_sauce", "unknown key (not a setting here)\n"),
    ],
    ids=["cloud.tokn", "mqtt.pasword", "updates.public_kee", "no-suggestion"],
)
def test_unknown_profile_keys_never_show_their_value(
    tmp_path: Path, body: str, key: str, suggestion: str
) -> None:
    profile = write_profile(tmp_path, body)
    result = cli("agent", "predict", "--config", str(profile), str(tmp_path / "x.npy"))
    assert result.returncode == 1
    out = _assert_hidden(result, f"{profile}: {key}: invalid profile", suggestion)
    assert "Traceback" not in out


def test_a_wrong_type_token_is_not_printed(tmp_path: Path) -> None:
    # A number where the token string belongs: pydantic would quote the number back.
    profile = write_profile(tmp_path, '[cloud]\nurl = "http://127.0.0.1:9"\ntoken = 731337\n')
    result = cli("agent", "config", "--config", str(profile))
    assert result.returncode == 1
    out = _assert_hidden(result, "cloud.token: Input should be a valid string")
    assert "731337" not in out
    profile = write_profile(tmp_path, '[mqtt]\npassword = ["S3CRET-typo-1"]\n')
    result = cli("agent", "config", "--config", str(profile))
    assert result.returncode == 1
    _assert_hidden(result, "mqtt.password: Input should be a valid string")


def test_a_mistyped_variable_is_warned_about_without_its_value(tmp_path: Path) -> None:
    profile = write_profile(tmp_path)
    env = clean_env(EDGECASCADE_CLOUD__TOKN=SECRET, EDGECASCADE_CLOUD__URL="")
    result = cli("agent", "config", "--config", str(profile), env=env)
    assert result.returncode == 0, result.stderr
    _assert_hidden(
        result,
        "EDGECASCADE_CLOUD__TOKN is not a setting of `edgecascade agent`; ignored "
        "(did you mean EDGECASCADE_CLOUD__TOKEN?)",
    )
    assert result.stderr.count("EDGECASCADE_CLOUD__TOKN") == 1  # warned once


def test_a_wrong_type_secret_variable_names_the_variable(tmp_path: Path) -> None:
    # The telemetry buffer cap is not secret: its bad value is shown; the token is never shown.
    profile = write_profile(tmp_path, '[cloud]\nurl = "http://127.0.0.1:9"\n')
    env = clean_env(EDGECASCADE_CLOUD__TOKEN=SECRET, EDGECASCADE_TELEMETRY__MAX_BYTES="lots")
    result = cli("agent", "config", "--config", str(profile), env=env)
    assert result.returncode == 1
    out = _assert_hidden(result, "EDGECASCADE_TELEMETRY__MAX_BYTES: Input should be a valid integer")
    assert "(got 'lots')" in out
    # The profile printed by `agent config` masks the token it did accept.
    result = cli("agent", "config", "--config", str(profile), env=clean_env(EDGECASCADE_CLOUD__TOKEN=SECRET))
    assert result.returncode == 0, result.stderr
    assert '"token": "**********"' in result.stdout and SECRET not in result.stdout + result.stderr


def test_cloud_serve_hides_tokens_in_variables(tmp_path: Path) -> None:
    env = clean_env(
        EDGECASCADE_SERVE__TOKNS=f"dev-1={SECRET}",
        EDGECASCADE_CLOUD_TOKENS=f"dev-2={SECRET}",
        EDGECASCADE_SERVE__WORKERS="0",
    )
    result = cli("cloud", "serve", "--repository", str(tmp_path), env=env)
    assert result.returncode == 1
    _assert_hidden(
        result,
        "EDGECASCADE_SERVE__TOKNS is not a setting of `edgecascade cloud serve`; ignored "
        "(did you mean EDGECASCADE_SERVE__TOKENS?)",
        "EDGECASCADE_CLOUD_TOKENS is not a setting of `edgecascade cloud serve`; ignored "
        "(renamed: did you mean EDGECASCADE_SERVE__TOKENS?)",
        "EDGECASCADE_SERVE__WORKERS: Input should be greater than or equal to 1 (got '0')",
    )


def test_cloud_ingest_hides_passwords(tmp_path: Path) -> None:
    env = clean_env(EDGECASCADE_INGEST__PASWORD=SECRET, EDGECASCADE_MQTT_PASSWORD=SECRET)
    result = cli("cloud", "ingest", "--protocol", "3", env=env)
    assert result.returncode == 1
    _assert_hidden(
        result,
        "EDGECASCADE_INGEST__PASWORD is not a setting of `edgecascade cloud ingest`; ignored "
        "(did you mean EDGECASCADE_INGEST__PASSWORD?)",
        "(renamed: did you mean EDGECASCADE_INGEST__PASSWORD?)",
        "--store: Field required",
        "--protocol: Input should be greater than or equal to 4 (got '3')",
    )


def test_fleet_hides_passwords(tmp_path: Path) -> None:
    env = clean_env(EDGECASCADE_FLEET__PASWORD=SECRET, EDGECASCADE_FLEET__BROKER="no-port")
    result = cli("fleet", "status", "--wait", "0", env=env)
    assert result.returncode == 1
    _assert_hidden(
        result,
        "EDGECASCADE_FLEET__PASWORD is not a setting of `edgecascade fleet`; ignored "
        "(did you mean EDGECASCADE_FLEET__PASSWORD?)",
        "EDGECASCADE_FLEET__BROKER: Value error, expected HOST:PORT (got 'no-port')",
    )


def test_url_credentials_are_masked(tmp_path: Path) -> None:
    # A camera URL's password is no key of its own, but it is a secret all the same.
    profile = write_profile(tmp_path, f'[cloud]\nurl = "ftp://admin:{SECRET}@10.0.0.9/v2"\n')
    result = cli("agent", "config", "--config", str(profile))
    assert result.returncode == 1
    _assert_hidden(
        result,
        "cloud.url: Value error, expected a URL starting http:// or https:// or grpc:// or grpcs://, got 'ftp://***@10.0.0.9/v2'",
    )
