"""The model repository layout and model.toml validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgecascade.cloud.repository import scan_repository, seed_demo_repository, version_key
from edgecascade.shared.errors import ConfigError
from edgecascade.shared.model_card import ModelCard


def test_demo_repository_layout(tmp_path: Path, models_dir: Path) -> None:
    repo = seed_demo_repository(tmp_path / "repo", models_dir, extra_versions=("1.10.0", "1.9.0"))
    (entry,) = scan_repository(repo)
    assert entry.name == "digits-cloud"
    assert [v.version for v in entry.versions] == ["1.0.0", "1.9.0", "1.10.0"]
    assert entry.default_version == "1.0.0"  # marked in model.toml, not the newest
    card = entry.versions[0].card
    assert isinstance(card, ModelCard) and card.file == "model.onnx" and card.version == "1.0.0"
    assert (repo / "digits-cloud" / "1.0.0" / "model.onnx").read_bytes() == (
        models_dir / "digits_cloud.onnx"
    ).read_bytes()


def test_version_key_orders_numbers_numerically() -> None:
    assert sorted(["2", "10", "1.10", "1.9"], key=version_key) == ["1.9", "1.10", "2", "10"]


@pytest.mark.parametrize(
    ("toml", "key"),
    [
        ("max_batch_size = 0", "max_batch_size"),
        ("max_queue_delay_ms = 'soon'", "max_queue_delay_ms"),
        ("instancs = 2", "instancs"),
        ('default_version = "3.0"', "default_version"),
    ],
)
def test_bad_model_toml_names_file_and_key(tmp_path: Path, models_dir: Path, toml: str, key: str) -> None:
    repo = seed_demo_repository(tmp_path / "repo", models_dir)
    (repo / "digits-cloud" / "model.toml").write_text(toml + "\n")
    with pytest.raises(ConfigError) as info:
        scan_repository(repo)
    assert info.value.file == str(repo / "digits-cloud" / "model.toml")
    assert info.value.key == key


def test_version_folder_without_a_model_is_refused(tmp_path: Path, models_dir: Path) -> None:
    repo = seed_demo_repository(tmp_path / "repo", models_dir)
    (repo / "digits-cloud" / "2.0.0").mkdir()
    with pytest.raises(ConfigError, match="exactly one model file"):
        scan_repository(repo)
    with pytest.raises(ConfigError, match="not found"):
        scan_repository(tmp_path / "missing")
