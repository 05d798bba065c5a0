"""`edgecascade models build-table` over a data set, a folder of images and key files."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgecascade.cli import main
from edgecascade.shared.lookup import TableFile, application_key, content_key
from edgecascade.tools.build_table import CloudModelRunner


@pytest.fixture(scope="module")
def runner(models_dir: Path):  # type: ignore[no-untyped-def]
    r = CloudModelRunner(models_dir / "digits_cloud.onnx")
    yield r
    r.close()


def test_dataset_with_content_keys(tmp_path: Path, models_dir: Path, runner, digits_split, capsys) -> None:
    _, held = digits_split
    out = tmp_path / "held.ectable"
    cloud = str(models_dir / "digits_cloud.onnx")
    rc = main(["models", "build-table", "--cloud-model", cloud, "--dataset", "digits-heldout", "--version", "5",
               "--name", "digits", "--out", str(out)])  # fmt: skip
    assert rc == 0 and "540 entries" in capsys.readouterr().out
    table = TableFile.open(out, encoding_version=1)
    meta = table.meta
    assert (meta.name, meta.version, meta.key_scheme, meta.entries) == ("digits", "5", "content", 540)
    assert (meta.cloud_model, meta.cloud_model_version) == ("digits-cloud", "1.0.0")
    assert meta.labels == [str(d) for d in range(10)] and meta.source == "digits-heldout"
    want = runner.probabilities(held.features)
    for i in (0, 100, 539):
        index = table.find(content_key(held.features[i]))
        assert index is not None
        assert table.probabilities(index) == pytest.approx(want[i], abs=2e-3)


def _write_pngs(folder: Path, images: np.ndarray, names: list[str]) -> None:
    folder.mkdir()
    for image, name in zip(images, names, strict=True):
        assert cv2.imwrite(str(folder / f"{name}.png"), image)


def test_folder_and_key_files_with_application_keys(
    tmp_path: Path, models_dir: Path, runner, digits_split
) -> None:
    _, held = digits_split
    names = [f"sku{i}" for i in range(6)]
    _write_pngs(tmp_path / "imgs", held.images[:6], names)
    cloud = str(models_dir / "digits_cloud.onnx")
    want = runner.probabilities(held.features[:6])
    (tmp_path / "keys.csv").write_text(
        "key,input\n" + "".join(f"BAR-{i},imgs/{n}.png\n" for i, n in enumerate(names))
    )
    (tmp_path / "keys.json").write_text(json.dumps({f"J{i}": f"imgs/{n}.png" for i, n in enumerate(names)}))
    cases = [("--folder", tmp_path / "imgs", names), ("--keys", tmp_path / "keys.csv", [f"BAR-{i}" for i in range(6)]),
             ("--keys", tmp_path / "keys.json", [f"J{i}" for i in range(6)])]  # fmt: skip
    for n, (flag, src, keys) in enumerate(cases):
        out = tmp_path / f"t{n}.ectable"
        rc = main(["models", "build-table", "--cloud-model", cloud, flag, str(src), "--key-scheme", "application",
                   "--version", "1", "--out", str(out)])  # fmt: skip
        assert rc == 0
        table = TableFile.open(out, encoding_version=1)
        assert table.meta.key_scheme == "application" and len(table) == 6
        for i, key in enumerate(keys):
            index = table.find(application_key(key))
            assert index is not None and int(table.probabilities(index).argmax()) == int(want[i].argmax())


def test_bad_inputs_are_user_errors(tmp_path: Path, models_dir: Path, capsys) -> None:
    cloud = str(models_dir / "digits_cloud.onnx")
    (tmp_path / "bad.csv").write_text("a,b,c\n")
    (tmp_path / "empty").mkdir()
    for flag, src, message in [
        ("--keys", tmp_path / "bad.csv", "row 1: expected two columns key,input"),
        ("--folder", tmp_path / "empty", "no input files"),
        ("--keys", tmp_path / "missing.json", "cannot read key file"),
    ]:
        rc = main(["models", "build-table", "--cloud-model", cloud, flag, str(src), "--version", "1",
                   "--out", str(tmp_path / "x.ectable")])  # fmt: skip
        assert rc == 1 and message in capsys.readouterr().err
    assert not (tmp_path / "x.ectable").exists()
