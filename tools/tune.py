"""Threshold tuning: the trade-off between escalation rate and cascade accuracy, per policy.

Runs the real edge and cloud models once over the validation split, fits a temperature on
the edge model's logits there (tools/calibration.py), then sweeps each policy's threshold on
the calibrated probabilities (a cascade answer is the cloud's where the policy says hard, the
edge's elsewhere). Picks, per policy, the threshold that meets the target with the fewest
escalations, and reports the held-out figures of that choice so they stay honest."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgecascade.edge.local_model import softmax
from edgecascade.edge.policies import EntropyPolicy
from edgecascade.edge.policies.registry import POLICIES
from edgecascade.shared.atomic_file import atomic_write
from edgecascade.shared.model_card import Calibration, ModelCard
from edgecascade.tools.calibration import Figures, figures, fit_temperature

KINDS = POLICIES


@dataclass(frozen=True)
class Point:
    kind: str
    threshold: float
    escalation_rate: float
    accuracy: float


def _hard(kind: str, threshold: float, edge_probs: np.ndarray) -> np.ndarray:
    scores = KINDS[kind](threshold).scores(edge_probs)  # higher = harder
    if KINDS[kind] is EntropyPolicy:
        return scores > threshold
    return scores > 1.0 - threshold  # max_prob < t  <=>  1 - max_prob > 1 - t; same for margin


def curve(
    kind: str, edge_probs: np.ndarray, cloud_pred: np.ndarray, labels: np.ndarray, steps: int = 200
) -> list[Point]:
    """Escalation rate and cascade accuracy for `steps` thresholds of one policy kind."""
    edge_pred = edge_probs.argmax(axis=1)
    points = []
    for threshold in np.linspace(0.0, 1.0, steps + 1):
        hard = _hard(kind, float(threshold), edge_probs)
        answer = np.where(hard, cloud_pred, edge_pred)
        points.append(
            Point(kind, round(float(threshold), 4), float(hard.mean()), float((answer == labels).mean()))
        )
    return points


def pick(
    points: list[Point],
    *,
    max_escalation: float | None,
    min_relative_accuracy: float | None,
    cloud_accuracy: float,
) -> Point | None:
    """The point meeting every given target with the fewest escalations (ties: higher accuracy)."""
    ok = [
        p
        for p in points
        if (max_escalation is None or p.escalation_rate <= max_escalation)
        and (min_relative_accuracy is None or p.accuracy >= min_relative_accuracy * cloud_accuracy)
    ]
    if not ok:
        return None
    if min_relative_accuracy is None:  # budget only: the most accurate point within budget
        return max(ok, key=lambda p: (p.accuracy, -p.escalation_rate))
    return min(ok, key=lambda p: (p.escalation_rate, -p.accuracy))


def evaluate(
    kind: str, threshold: float, edge_probs: np.ndarray, cloud_pred: np.ndarray, labels: np.ndarray
) -> Point:
    hard = _hard(kind, threshold, edge_probs)
    answer = np.where(hard, cloud_pred, edge_probs.argmax(axis=1))
    return Point(kind, threshold, float(hard.mean()), float((answer == labels).mean()))


@dataclass(frozen=True)
class Split:
    """One split's uncalibrated edge logits, the cloud's predicted classes and the labels."""

    logits: np.ndarray
    cloud_pred: np.ndarray
    labels: np.ndarray


@dataclass
class Tuning:
    """Everything `models tune` found: the temperature and its figures per split, the cascade
    baselines, and per policy the chosen point on validation and its held-out figures."""

    temperature: float
    validation: Figures
    held_out: Figures
    edge_accuracy: float
    cloud_accuracy: float
    cloud_accuracy_held: float
    curves: dict[str, list[Point]] = field(default_factory=dict)
    chosen: dict[str, Point] = field(default_factory=dict)
    held: dict[str, Point] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "temperature": self.temperature,
            "calibration": {"validation": self.validation.as_dict(), "held_out": self.held_out.as_dict()},
            "validation": {"edge_accuracy": self.edge_accuracy, "cloud_accuracy": self.cloud_accuracy},
            "held_out": {"cloud_accuracy": self.cloud_accuracy_held},
            "policies": {
                kind: None
                if kind not in self.chosen
                else {
                    "threshold": self.chosen[kind].threshold,
                    "validation": _rates(self.chosen[kind]),
                    "held_out": _rates(self.held[kind]),
                }
                for kind in self.curves
            },
        }


def _rates(p: Point) -> dict[str, float]:
    return {"escalation_rate": p.escalation_rate, "accuracy": p.accuracy}


def tune(
    val: Split,
    held: Split,
    *,
    temperature: float | None,
    max_escalation: float | None,
    min_relative_accuracy: float | None,
) -> Tuning:
    """Fit T on `val` (or use the given `temperature`), then pick each policy's threshold on
    the calibrated validation probabilities and evaluate it on `held`."""
    if temperature is None:
        # Rounded as the card stores it, so the figures are those of the served temperature.
        temperature = round(fit_temperature(val.logits, val.labels), 6)
    t = np.float32(temperature)
    pv, ph = softmax(val.logits / t), softmax(held.logits / t)
    result = Tuning(
        temperature=temperature,
        validation=figures(val.logits, val.labels, temperature),
        held_out=figures(held.logits, held.labels, temperature),
        edge_accuracy=float((pv.argmax(axis=1) == val.labels).mean()),
        cloud_accuracy=float((val.cloud_pred == val.labels).mean()),
        cloud_accuracy_held=float((held.cloud_pred == held.labels).mean()),
    )
    for kind in KINDS:
        result.curves[kind] = curve(kind, pv, val.cloud_pred, val.labels)
        best = pick(
            result.curves[kind],
            max_escalation=max_escalation,
            min_relative_accuracy=min_relative_accuracy,
            cloud_accuracy=result.cloud_accuracy,
        )
        if best is not None:
            result.chosen[kind] = best
            result.held[kind] = evaluate(kind, best.threshold, ph, held.cloud_pred, held.labels)
    return result


def write_calibration(artifact: Path, temperature: float, fitted_on: str) -> Path:
    """Set `calibration` in the card beside `artifact`, keeping the rest of the file as it is;
    the result is validated as a card before it is written."""
    path = ModelCard.path_for(artifact)
    data = json.loads(path.read_text())
    data["calibration"] = Calibration(temperature=temperature, fitted_on=fitted_on).model_dump(
        exclude_none=True
    )
    ModelCard.model_validate(data)
    atomic_write(path, (json.dumps(data, indent=2) + "\n").encode())
    return path


def write_policy(profile: Path, kind: str, threshold: float) -> None:
    """Set `policies = [...]` in the profile's [cascade] table (added if absent), keeping the rest."""
    line = (
        f'policies = [{{ kind = "{kind}", threshold = {threshold:.4f} }}]  # set by edgecascade models tune'
    )
    text = profile.read_text() if profile.exists() else ""
    section = re.search(r"(?ms)^\[cascade\]\s*$(.*?)(?=^\[|\Z)", text)
    if section is None:
        text = text.rstrip("\n") + f"\n\n[cascade]\n{line}\n"
    else:
        body = section.group(1)
        new_body = (
            re.sub(r"(?m)^policies\s*=.*$", line, body, count=1)
            if re.search(r"(?m)^policies\s*=", body)
            else f"\n{line}" + body
        )
        text = text[: section.start(1)] + new_body + text[section.end(1) :]
    profile.write_text(text)


def plot(
    curves: dict[str, list[Point]],
    chosen: dict[str, Point],
    cloud_accuracy: float,
    edge_accuracy: float,
    out: Path,
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for kind, points in curves.items():
        ax.plot([p.escalation_rate * 100 for p in points], [p.accuracy * 100 for p in points], label=kind)
        if kind in chosen:
            c = chosen[kind]
            ax.scatter([c.escalation_rate * 100], [c.accuracy * 100], marker="o", zorder=3)
    ax.axhline(cloud_accuracy * 100, linestyle="--", color="grey", label="cloud only")
    ax.axhline(edge_accuracy * 100, linestyle=":", color="grey", label="edge only")
    ax.set_xlabel("escalated to the cloud (%)")
    ax.set_ylabel("cascade accuracy (%)")
    ax.set_xlim(0, 40)
    ax.set_title("Cascade accuracy vs escalation rate (validation split)")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
