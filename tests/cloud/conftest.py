"""A cloud model repository built from the committed demo model, shared by the cloud tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgecascade.cloud.repository import ModelSettings, add_version, seed_demo_repository

TOKENS_TOML = """
store-1 = "tok-store-1"

[kiosk-2]
token = "tok-kiosk-2"
models = ["digits-batched"]
"""


@pytest.fixture(scope="session")
def cloud_repo(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> Path:
    """digits-cloud 1.0.0 (default) and 2.0.0; digits-batched (batches of up to 16, 300 ms wait);
    digits-tiny-queue (no batching, one request may wait)."""
    repo = tmp_path_factory.mktemp("cloud-repo") / "models"
    seed_demo_repository(repo, models_dir, extra_versions=("2.0.0",))
    source = models_dir / "digits_cloud.onnx"
    add_version(repo, "digits-batched", "1", source, ModelSettings(max_batch_size=16, max_queue_delay_ms=300))
    add_version(repo, "digits-tiny-queue", "1", source, ModelSettings(max_batch_size=1, max_queue_size=1))
    return repo


@pytest.fixture(scope="session")
def tokens_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tokens") / "tokens.toml"
    path.write_text(TOKENS_TOML)
    return path
