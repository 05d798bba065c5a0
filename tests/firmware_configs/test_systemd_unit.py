"""The shipped systemd unit, checked by systemd's own tools, and its environment file loaded
with the profile it names."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edgecascade import bundled
from edgecascade.edge.config import load_profile

UNIT = bundled.systemd_dir() / "edgecascade-agent.service"
ENV_FILE = bundled.systemd_dir() / "edgecascade.env"
ANALYZE = shutil.which("systemd-analyze")
needs_systemd = pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed")


def unit_settings() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            out.setdefault(key.strip(), []).append(value.strip())
    return out


def local_copy(tmp_path: Path) -> Path:
    """The unit with ExecStart pointing at this environment's real `edgecascade` script
    (verify checks that the command exists); every other line as shipped."""
    script = Path(sys.executable).parent / "edgecascade"
    assert script.exists(), script
    text = UNIT.read_text().replace("/opt/edgecascade/venv/bin/edgecascade", str(script))
    path = tmp_path / UNIT.name
    path.write_text(text)
    return path


def test_unit_is_a_notify_service_with_watchdog_user_and_directories() -> None:
    s = unit_settings()
    assert s["Type"] == ["notify"] and s["NotifyAccess"] == ["main"]
    assert int(s["WatchdogSec"][0]) >= 10
    assert s["User"] == ["edgecascade"] and s["Group"] == ["edgecascade"]
    assert s["StateDirectory"] == ["edgecascade"] and s["ConfigurationDirectory"] == ["edgecascade"]
    assert s["ExecStart"][0].startswith("/opt/edgecascade/venv/bin/edgecascade --log-json agent run")


@needs_systemd
def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(ANALYZE), "verify", str(local_copy(tmp_path))], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == ""


@needs_systemd
def test_hardening_scores_ok(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(ANALYZE), "security", "--offline=yes", str(local_copy(tmp_path))],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+) (\w+)", result.stdout)
    assert match, result.stdout[-2000:]
    score, verdict = float(match.group(1)), match.group(2)
    assert score <= 4.0 and verdict == "OK", result.stdout[-2000:]
    # The threshold option makes systemd itself fail above 4.0 (exit status 1).
    strict = subprocess.run(
        [str(ANALYZE), "security", "--offline=yes", "--threshold=40", str(local_copy(tmp_path))],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert strict.returncode == 0


def test_environment_file_overrides_the_profile_it_names() -> None:
    env = {}
    for line in ENV_FILE.read_text().splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            env[key] = value
    assert env["EDGECASCADE_CONFIG"] == "/etc/edgecascade/raspberry-pi-4.toml"
    # The CA file the env file names lives on the device, not here: its check is start-up's.
    profile = load_profile(bundled.profile_path("raspberry-pi-4"), environ=env, check_files_exist=False)
    assert profile.device_id == "rpi4-0001" and str(profile.data_dir) == "/var/lib/edgecascade"
    assert profile.cloud.url == "https://inference.example.com"
    assert profile.mqtt.enabled and profile.mqtt.port == 8883 and profile.mqtt.host == "mqtt.example.com"
    assert profile.updates.enabled is False
