"""Device profiles: every shipped file validates; errors name the file, the key and what was expected."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgecascade.edge.config import load_profile
from edgecascade.edge.local_model import resolve_artifact
from edgecascade.shared.errors import ConfigError

FIRMWARE = Path(__file__).parent.parent.parent / "firmware-configs"
PROFILES = sorted(FIRMWARE.glob("*.toml"))


def test_the_four_device_kinds_are_shipped() -> None:
    names = {load_profile(p, environ={}).profile for p in PROFILES}
    assert {"raspberry-pi-4", "raspberry-pi-5", "x86-store-pc", "jetson-orin-nano"} <= names


@pytest.mark.parametrize("path", PROFILES, ids=lambda p: p.name)
def test_every_profile_validates_and_its_model_exists(path: Path) -> None:
    profile = load_profile(path, environ={})
    artifact = resolve_artifact(profile.model.path, list(profile.runtime.backend_preference))
    assert artifact.is_file()
    assert profile.memory_budget_mb > 0 and profile.runtime.threads >= 1


def _write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "device.toml"
    path.write_text(
        'profile = "test"\ndata_dir = "data"\nmemory_budget_mb = 100\n[model]\npath = "m.tflite"\n' + body
    )
    return path


def test_unknown_key_names_file_and_key(tmp_path: Path) -> None:
    path = _write(tmp_path, "[runtime]\nthreadz = 4\n")
    with pytest.raises(ConfigError) as info:
        load_profile(path, environ={})
    assert info.value.file == str(path) and info.value.key == "runtime.threadz"
    assert "runtime.threadz: unknown key (not a setting here); did you mean runtime.threads?" in str(
        info.value
    )


def test_wrong_type_says_what_was_expected(tmp_path: Path) -> None:
    path = _write(tmp_path, '[runtime]\nthreads = "many"\n')
    with pytest.raises(ConfigError, match=r"runtime\.threads: Input should be a valid integer.*'many'"):
        load_profile(path, environ={})
    path = _write(tmp_path, '[cascade]\npolicies = [{ kind = "vibes", threshold = 0.5 }]\n')
    with pytest.raises(
        ConfigError,
        match=r"cascade\.policies\.0\.kind: .*unknown escalation policy kind 'vibes'; known kinds: max_prob, margin, entropy",
    ):
        load_profile(path, environ={})


def test_missing_file_and_bad_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="profile file not found"):
        load_profile(tmp_path / "absent.toml", environ={})
    bad = tmp_path / "bad.toml"
    bad.write_text("profile = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_profile(bad, environ={})


def test_relative_paths_resolve_against_the_profile(tmp_path: Path) -> None:
    profile = load_profile(_write(tmp_path, ""), environ={})
    assert profile.data_dir == (tmp_path / "data").resolve()
    assert profile.model.path == (tmp_path / "m.tflite").resolve()


def test_environment_overrides(tmp_path: Path) -> None:
    env = {"EDGECASCADE_DEVICE_ID": "pi-42", "EDGECASCADE_CLOUD__URL": "http://10.0.0.1:8000/", "HOME": "/x"}
    profile = load_profile(_write(tmp_path, ""), environ=env)
    assert profile.device_id == "pi-42" and profile.cloud.url == "http://10.0.0.1:8000"
    assert load_profile(_write(tmp_path, ""), environ={"EDGECASCADE_CLOUD__URL": ""}).cloud.url is None
    with pytest.raises(ConfigError, match=r"EDGECASCADE_RUNTIME__THREADS: Input should be greater") as info:
        load_profile(_write(tmp_path, ""), environ={"EDGECASCADE_RUNTIME__THREADS": "0"})
    assert info.value.key == "EDGECASCADE_RUNTIME__THREADS"


def test_many_problems_are_listed_up_to_a_bound(tmp_path: Path) -> None:
    groups = json.dumps([f"a/{i}" for i in range(60)])  # groups take at most 64
    with pytest.raises(ConfigError) as info:
        load_profile(_write(tmp_path, ""), environ={"EDGECASCADE_GROUPS": groups})
    lines = str(info.value).splitlines()
    assert "invalid profile (60 problems):" in lines[0]
    assert len(lines) == 22 and lines[-1] == "  ... and 40 more"


@pytest.mark.parametrize("value", ["nan", "inf", "-1.0", "0", '"lots"', "[1]", "{ a = 1 }"])
def test_the_body_budget_refuses_nan_negative_and_wrong_types(tmp_path: Path, value: str) -> None:
    path = _write(tmp_path, f"[api]\nmax_buffered_mb = {value}\n")
    with pytest.raises(ConfigError, match=r"api\.max_buffered_mb: "):
        load_profile(path, environ={})
    with pytest.raises(ConfigError, match="EDGECASCADE_API__MAX_BUFFERED_MB"):
        load_profile(_write(tmp_path, ""), environ={"EDGECASCADE_API__MAX_BUFFERED_MB": value.strip('"')})


@pytest.mark.parametrize("value", ["nan", "-5", "0", "lots"])
def test_the_cloud_body_budget_refuses_nan_negative_and_wrong_types(value: str) -> None:
    from edgecascade.cloud.cli_settings import load_settings
    from edgecascade.cloud.settings import ServerSettings

    env = {"EDGECASCADE_SERVE__MAX_BUFFERED_MB": value}
    with pytest.raises(ConfigError, match="EDGECASCADE_SERVE__MAX_BUFFERED_MB"):
        load_settings(ServerSettings, {}, section="SERVE", command="cloud serve", environ=env)
    with pytest.raises(ConfigError, match="--max-buffered-mb"):
        load_settings(
            ServerSettings, {"max_buffered_mb": value}, section="SERVE", command="cloud serve", environ={}
        )


def test_infinity_is_refused_everywhere_not_a_traceback_at_start(tmp_path: Path) -> None:
    """`max_body_mb = inf` once passed validation and then failed as an OverflowError traceback
    when the daemon turned MiB into bytes; no setting takes infinity."""
    from edgecascade.cloud.cli_settings import load_settings
    from edgecascade.cloud.settings import ServerSettings

    for body in (
        "[api]\nmax_body_mb = inf\n",
        "[daemon]\nshutdown_timeout_s = inf\n",
        "[cloud]\ndeadline_s = inf\n",
    ):
        with pytest.raises(ConfigError, match="Input should be a finite number"):
            load_profile(_write(tmp_path, body), environ={})
    with pytest.raises(ConfigError, match="--max-body-mb: Input should be a finite number"):
        load_settings(
            ServerSettings, {"max_body_mb": "inf"}, section="SERVE", command="cloud serve", environ={}
        )
