"""The cascade answering from a real table built with the real cloud model."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from edgecascade.edge.cascade import Cascade, CascadeRequest
from edgecascade.edge.config import DeviceProfile
from edgecascade.edge.lookup import TableLookup, build
from edgecascade.edge.model_slot import ModelSlot
from edgecascade.edge.policies import MaxProbabilityPolicy
from edgecascade.shared.errors import StorageError
from edgecascade.shared.lookup import TableFile, write_table
from edgecascade.tools.build_table import TableInputs, build_table
from tests.edge.lookup.conftest import CountingModel, CuttableCloud


def test_table_hits_answer_without_model_or_cloud(
    heldout_table: Path, edge_model: CountingModel, cloud: CuttableCloud, digits_split
) -> None:
    _, held = digits_split
    table = TableLookup()
    table.replace(heldout_table)
    cascade = Cascade(ModelSlot(edge_model), MaxProbabilityPolicy(0.99), cloud=cloud, lookups=[table])
    answers = [cascade.answer(CascadeRequest(row, request_id=str(i))) for i, row in enumerate(held.features)]
    expected = cloud.probabilities(held.features).argmax(axis=1)
    assert edge_model.runs == 0 and cloud.calls == 0
    assert table.stats.hits == len(held.features) and table.stats.misses == 0
    for answer, want in zip(answers, expected, strict=True):
        assert answer.source == "table" and answer.table_version == "t1"
        assert answer.class_index == want and answer.label == str(want)
        assert answer.cloud_model is not None and answer.cloud_model.name == "digits-cloud"
        assert answer.edge_model is None and len(answer.probabilities) == 10


def test_a_miss_falls_through_to_the_model(
    heldout_table: Path, edge_model: CountingModel, digits_split
) -> None:
    _, held = digits_split
    table = TableLookup()
    table.replace(heldout_table)
    cascade = Cascade(ModelSlot(edge_model), MaxProbabilityPolicy(0.0), lookups=[table])
    unseen = held.features[0] + np.float32(1 / 255)  # one grey level brighter: a different input
    answer = cascade.answer(CascadeRequest(unseen))
    assert answer.source == "edge" and answer.table_version is None
    assert edge_model.runs == 1 and table.stats.misses == 1 and table.stats.hits == 0


def test_application_keys(tmp_path: Path, models_dir: Path, edge_model: CountingModel, digits_split) -> None:
    _, held = digits_split
    out = tmp_path / "skus.ectable"
    skus = [f"SKU-{i:04d}" for i in range(20)]
    build_table(
        models_dir / "digits_cloud.onnx",
        TableInputs(held.features[:20], skus, "test skus"),
        out,
        scheme="application",
        name="skus",
        version="7",
    )
    table = TableLookup()
    table.replace(out)
    cascade = Cascade(ModelSlot(edge_model), MaxProbabilityPolicy(0.0), lookups=[table])
    # The key decides, not the features: SKU-0003 answers with row 3's cloud label.
    answer = cascade.answer(CascadeRequest(held.features[0], key="SKU-0003"))
    assert answer.source == "table" and answer.table_version == "7" and answer.label == str(held.labels[3])
    assert cascade.answer(CascadeRequest(held.features[0])).source == "edge"  # no key
    assert cascade.answer(CascadeRequest(held.features[0], key="SKU-9999")).source == "edge"
    assert table.stats.hits == 1 and table.stats.unkeyable == 1 and table.stats.misses == 1
    assert edge_model.runs == 2


def _corrupt_body(src: Path, dst: Path) -> None:
    data = bytearray(src.read_bytes())
    data[-7] ^= 0x40
    dst.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("flip", "checksum mismatch"),
        ("truncate", "truncated"),
        ("garbage", "not a lookup table"),
        ("header", "header metadata truncated or corrupt"),
        ("empty", "truncated header"),
    ],
)
def test_damaged_table_is_refused_and_previous_kept(
    heldout_table: Path, tmp_path: Path, digits_split, damage: str, message: str
) -> None:
    _, held = digits_split
    table = TableLookup()
    table.replace(heldout_table)
    bad = tmp_path / "bad.ectable"
    data = heldout_table.read_bytes()
    if damage == "flip":
        _corrupt_body(heldout_table, bad)
    elif damage == "truncate":
        bad.write_bytes(data[: len(data) - 100])
    elif damage == "garbage":
        bad.write_bytes(b"PK\x03\x04" + bytes(200))
    elif damage == "header":
        bad.write_bytes(data[:30] + b"X" + data[31:])
    else:
        bad.write_bytes(b"")
    with pytest.raises(StorageError, match=message):
        table.replace(bad)
    assert table.version == "t1" and table.stats.load_failures == 1 and table.stats.replacements == 1
    assert table.lookup(CascadeRequest(held.features[5])) is not None


def test_table_for_another_encoding_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "v2.ectable"
    write_table(
        path,
        np.arange(32, dtype=np.uint8).reshape(2, 16),
        np.eye(2, 3),
        name="x",
        version="1",
        cloud_model="m",
        cloud_model_version="1",
        encoding_version=2,
        key_scheme="content",
        labels=["a", "b", "c"],
    )
    with pytest.raises(StorageError, match="feature-encoding version 2, this device encodes with version 1"):
        TableLookup(encoding_version=1).replace(path)
    assert TableFile.open(path, encoding_version=2).meta.entries == 2


def test_replace_swaps_to_a_new_version(
    heldout_table: Path, tmp_path: Path, models_dir: Path, digits_split
) -> None:
    _, held = digits_split
    table = TableLookup()
    table.replace(heldout_table)
    newer = tmp_path / "t2.ectable"
    build_table(
        models_dir / "digits_cloud.onnx",
        TableInputs(held.features[:10], None, "ten"),
        newer,
        scheme="content",
        name="digits",
        version="t2",
    )
    table.replace(newer)
    hit = table.lookup(CascadeRequest(held.features[3]))
    assert hit is not None and hit.table_version == "t2"
    assert table.lookup(CascadeRequest(held.features[30])) is None  # only in t1
    table.close()


def test_agent_with_a_corrupt_factory_table_serves_with_its_model(
    heldout_table: Path,
    tmp_path: Path,
    edge_model: CountingModel,
    digits_split,
    caplog: pytest.LogCaptureFixture,
) -> None:
    _, held = digits_split
    bad = tmp_path / "factory.ectable"
    _corrupt_body(heldout_table, bad)
    profile = DeviceProfile.model_validate(
        {
            "profile": "test",
            "data_dir": str(tmp_path / "data"),
            "memory_budget_mb": 100,
            "model": {"path": str(edge_model.path)},
            "lookup": {"table": str(bad)},
        }
    )
    with caplog.at_level(logging.ERROR, logger="edgecascade.edge.lookup.table_lookup"):
        parts = build(profile)
    assert "lookup table refused" in caplog.text and "checksum mismatch" in caplog.text
    assert parts.table.version is None and parts.stats()["table_load_failures"] == 1
    assert parts.cache is not None and parts.sinks == [parts.cache]
    cascade = Cascade(ModelSlot(edge_model), MaxProbabilityPolicy(0.0), lookups=parts.lookups)
    assert cascade.answer(CascadeRequest(held.features[0])).source == "edge"
    # A good table delivered later is taken.
    good = tmp_path / "update.ectable"
    shutil.copy(heldout_table, good)
    parts.table.replace(good)
    assert cascade.answer(CascadeRequest(held.features[0])).source == "table"
    parts.close()
