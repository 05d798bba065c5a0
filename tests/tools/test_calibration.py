"""Temperature scaling and its figures, on arrays whose answers are known."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edgecascade.tools.calibration import ece, figures, fit_temperature, nll


def test_fit_recovers_the_temperature_labels_were_drawn_with() -> None:
    rng = np.random.default_rng(0)
    logits = (rng.standard_normal((20000, 5)) * 3).astype(np.float32)
    for true_t in (0.5, 2.0):
        p = np.exp(logits / true_t)
        p /= p.sum(axis=1, keepdims=True)
        labels = np.array([rng.choice(5, p=row) for row in p])
        t = fit_temperature(logits, labels)
        assert t == pytest.approx(true_t, rel=0.05)
        assert nll(logits, labels, t) <= min(nll(logits, labels, t * 1.05), nll(logits, labels, t / 1.05))


def test_ece_is_the_weighted_gap_per_confidence_bin() -> None:
    # Two bins: confidence 0.95 (4 examples, 3 right: gap 0.20) and 0.6 (2 examples, 2 right: gap 0.40).
    probs = np.array([[0.95, 0.05]] * 4 + [[0.6, 0.4]] * 2)
    labels = np.array([0, 0, 0, 1, 0, 0])
    assert ece(probs, labels) == pytest.approx((4 * 0.20 + 2 * 0.40) / 6)
    assert ece(np.array([[1.0, 0.0]]), np.array([0])) == 0.0  # confidence 1 falls in the last bin


def test_figures_keep_accuracy_and_report_both_sides() -> None:
    logits = np.array([[4.0, 0.0], [3.0, 0.0], [0.0, 2.0], [2.5, 0.0]], dtype=np.float32)
    labels = np.array([0, 1, 1, 0])
    f = figures(logits, labels, 3.0)
    assert f.accuracy == 0.75 and f.examples == 4
    assert f.nll_before == pytest.approx(nll(logits, labels)) and f.nll_after == pytest.approx(
        nll(logits, labels, 3.0)
    )
    assert math.isfinite(f.ece_before) and f.ece_after != f.ece_before
