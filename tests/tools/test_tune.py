"""`edgecascade models tune` on the real models and validation split."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from edgecascade.edge.config import load_profile
from edgecascade.tools.tune import curve, pick, write_policy

REPO = Path(__file__).parent.parent.parent


def test_tune_writes_a_threshold_that_meets_the_targets(tmp_path: Path) -> None:
    profile = tmp_path / "pi.toml"
    shutil.copy(REPO / "firmware-configs" / "raspberry-pi-4.toml", profile)
    text = profile.read_text().replace('path = "../tests', f'path = "{REPO}/tests')
    profile.write_text(text.replace("threshold = 0.6800", "threshold = 0.1"))
    plot = tmp_path / "tune.png"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "edgecascade",
            "models",
            "tune",
            "--max-escalation",
            "0.10",
            "--relative-accuracy",
            "0.995",
            "--write-profile",
            str(profile),
            "--plot",
            str(plot),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    row = next(line for line in result.stdout.splitlines() if line.startswith("max_prob"))
    held_escalation, held_relative = float(row.split()[4].rstrip("%")), float(row.split()[6].rstrip("%"))
    assert held_escalation <= 10.0 and held_relative >= 99.5
    policy = load_profile(profile, environ={}).cascade.policies[0]
    assert policy.kind == "max_prob" and 0.5 < policy.threshold < 0.95
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


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
