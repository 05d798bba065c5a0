"""A card's calibration: a positive, finite temperature, on classifiers only."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgecascade.shared.model_card import ModelCard

MODELS = Path(__file__).parent.parent / "fixtures" / "models"


def card(**changes: object) -> dict[str, object]:
    data = json.loads((MODELS / "digits_rgb_nchw.onnx.card.json").read_text())
    data.update(changes)
    return data


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf")])
def test_a_temperature_must_be_positive_and_finite(bad: float) -> None:
    with pytest.raises(ValueError, match=r"calibration\.temperature"):
        ModelCard.model_validate(card(calibration={"temperature": bad}))


def test_a_calibration_is_read_and_absent_by_default() -> None:
    assert ModelCard.model_validate(card()).calibration is None
    loaded = ModelCard.model_validate(card(calibration={"temperature": 0.8, "fitted_on": "photos/"}))
    assert loaded.calibration is not None and loaded.calibration.temperature == 0.8


def test_only_classifiers_take_a_calibration() -> None:
    with pytest.raises(ValueError, match="calibration applies to classification cards, not tensor"):
        ModelCard.model_validate(card(task="tensor", calibration={"temperature": 1.5}))
