"""The table artifact: sorted unique keys, duplicates, header, lookups through mmap."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgecascade.shared.errors import InputError
from edgecascade.shared.lookup import TableFile, write_table


def _write(path: Path, keys: np.ndarray, probs: np.ndarray, **extra: object) -> None:
    write_table(
        path,
        keys,
        probs,
        name="t",
        version="3",
        cloud_model="m",
        cloud_model_version="9",
        encoding_version=1,
        key_scheme="content",
        labels=["a", "b", "c"],
        **extra,  # type: ignore[arg-type]
    )


def test_every_key_found_and_absent_keys_not(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    keys = rng.integers(0, 256, (5000, 16), dtype=np.uint8)
    keys[7, 8:] = 0  # trailing zero bytes must not confuse the fixed-width comparison
    probs = rng.dirichlet(np.ones(3), 5000).astype(np.float32)
    path = tmp_path / "t.ectable"
    _write(path, keys, probs, source="random")
    table = TableFile.open(path, encoding_version=1)
    assert len(table) == 5000 and table.meta.cloud_model_version == "9" and table.meta.source == "random"
    for i in range(0, 5000, 97):
        index = table.find(keys[i].tobytes())
        assert index is not None
        assert table.probabilities(index) == pytest.approx(probs[i], abs=1e-3)
    prefix = keys[7].tobytes()[:8] + b"\x01" + bytes(7)
    assert table.find(prefix) is None and table.find(bytes(16)) is None and table.find(b"\xff" * 16) is None
    table.close()


def test_duplicate_keys_stored_once_conflicts_refused(tmp_path: Path) -> None:
    keys = np.array([[1] * 16, [2] * 16, [1] * 16], dtype=np.uint8)
    probs = np.array([[0.1, 0.2, 0.7], [1, 0, 0], [0.1, 0.2, 0.7]], dtype=np.float32)
    _write(tmp_path / "d.ectable", keys, probs)
    assert len(TableFile.open(tmp_path / "d.ectable", encoding_version=1)) == 2
    probs[2] = [0.7, 0.2, 0.1]
    with pytest.raises(InputError, match="1 duplicate keys carry different outputs"):
        _write(tmp_path / "c.ectable", keys, probs)
    assert not (tmp_path / "c.ectable").exists()


def test_output_shape_must_match_labels(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"shape \[2, 3\]"):
        _write(tmp_path / "s.ectable", np.zeros((2, 16), np.uint8), np.zeros((2, 4)))
