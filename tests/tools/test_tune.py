"""`edgecascade models tune` on the real models and validation split."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from edgecascade.edge.config import load_profile
from edgecascade.shared.model_card import ModelCard
from edgecascade.tools.tune import curve, pick, write_policy

REPO = Path(__file__).parent.parent.parent
MODELS = REPO / "tests" / "fixtures" / "models"


def _tune(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edgecascade", "models", "tune", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )


def _row(stdout: str, kind: str) -> tuple[float, float]:
    """(held-out escalation %, held-out accuracy relative to cloud-only %) of one policy's row."""
    row = next(line for line in stdout.splitlines() if line.startswith(kind)).split()
    return float(row[4].rstrip("%")), float(row[6].rstrip("%"))


def test_tune_calibrates_and_writes_the_threshold_and_temperature(tmp_path: Path) -> None:
    model = tmp_path / "digits_edge_int8.tflite"
    for suffix in ("", ".card.json"):
        shutil.copy(MODELS / f"digits_edge_int8.tflite{suffix}", f"{model}{suffix}")
    profile = tmp_path / "pi.toml"
    shutil.copy(REPO / "firmware-configs" / "raspberry-pi-4.toml", profile)
    text = profile.read_text().replace(
        'path = "../tests/fixtures/models/digits_edge_int8"', f'path = "{model}"'
    )
    profile.write_text(text.replace("threshold = 0.6800", "threshold = 0.1"))
    plot = tmp_path / "tune.png"
    result = _tune(str(model), "--max-escalation", "0.15", "--relative-accuracy", "0.995", "--policy",
                   "max_prob", "--write-profile", str(profile), "--plot", str(plot))  # fmt: skip
    assert result.returncode == 0, result.stderr
    held_escalation, held_relative = _row(result.stdout, "max_prob")
    assert held_escalation <= 15.0 and held_relative >= 99.5
    validation = next(line for line in result.stdout.splitlines() if line.startswith("validation "))
    ece_before, ece_after = (float(v.rstrip("%")) for v in validation.split()[-2:])
    assert ece_after < ece_before
    policy = load_profile(profile, environ={}).cascade.policies[0]
    assert policy.kind == "max_prob" and 0.5 < policy.threshold < 0.99
    calibration = ModelCard.load_for(model).calibration
    assert calibration is not None and f"temperature {calibration.temperature:.4f}" in result.stdout
    assert ModelCard.load_for(MODELS / "digits_edge_int8.tflite").calibration is None  # the copy only
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_tune_without_calibration_keeps_the_profiles_threshold(tmp_path: Path) -> None:
    """The shipped profiles' 0.68 was chosen on the uncalibrated digits model: --no-calibration
    finds it again and writes nothing."""
    result = _tune("--no-calibration", "--max-escalation", "0.10", "--relative-accuracy", "0.995",
                   "--plot", str(tmp_path / "tune.png"))  # fmt: skip
    assert result.returncode == 0, result.stderr
    held_escalation, held_relative = _row(result.stdout, "max_prob")
    assert held_escalation <= 10.0 and held_relative >= 99.5
    assert "chosen: max_prob threshold 0.6800, temperature 1.0000" in result.stdout


def test_pick_respects_each_target() -> None:
    import numpy as np

    probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.55, 0.45], [0.99, 0.01]])
    labels = np.array([0, 1, 0, 0])
    cloud = np.array([0, 1, 0, 0])  # the cloud is right on all four
    points = curve("max_prob", probs, cloud, labels, steps=100)
    best = pick(points, max_escalation=None, min_relative_accuracy=1.0, cloud_accuracy=1.0)
    assert best is not None and best.accuracy == 1.0 and best.escalation_rate == 0.5  # 0.6 and 0.55 go up
    capped = pick(points, max_escalation=0.0, min_relative_accuracy=None, cloud_accuracy=1.0)
    assert capped is not None and capped.escalation_rate == 0.0 and capped.accuracy == 0.75


def test_write_policy_adds_a_cascade_table(tmp_path: Path) -> None:
    profile = tmp_path / "p.toml"
    profile.write_text('profile = "x"\n[model]\npath = "m"\n')
    write_policy(profile, "entropy", 0.3)
    assert '[cascade]\npolicies = [{ kind = "entropy", threshold = 0.3000 }]' in profile.read_text()
    write_policy(profile, "margin", 0.2)
    assert profile.read_text().count("policies =") == 1 and 'kind = "margin"' in profile.read_text()
