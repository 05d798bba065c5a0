"""The daemon's start-up model check in a child process, and its record of passed checks: real
child processes, real models. A child command that dies by SIGSEGV stands in for a model that
crashes its interpreter, and shows whether a child ran at all."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from edgecascade.edge.model_check import CACHE_FILE, check_in_child, options_from_json, options_to_json
from edgecascade.shared.backends import BackendOptions
from edgecascade.shared.backends.base import OnnxProvider, TFLiteDelegate
from edgecascade.shared.errors import ModelError, ModelLoadError
from edgecascade.shared.model_card import ModelCard

MODELS = Path(__file__).resolve().parents[1] / "fixtures" / "models"
SEGV = [sys.executable, "-c", "import ctypes; ctypes.string_at(0)"]


def _copy(name: str, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    dst = folder / name
    shutil.copyfile(MODELS / name, dst)
    shutil.copyfile(ModelCard.path_for(MODELS / name), ModelCard.path_for(dst))
    return dst


def _records(data: Path) -> dict[str, object]:
    path = data / CACHE_FILE
    return json.loads(path.read_text())["passed"] if path.exists() else {}


def test_a_passed_check_is_skipped_until_the_artifact_card_or_options_change(tmp_path: Path) -> None:
    model, data = _copy("digits_edge_int8.tflite", tmp_path / "m"), tmp_path / "data"
    models: list[tuple[Path, str | None]] = [(model, None)]
    check_in_child(models, 60, cache_dir=data)  # the real check, in a real child
    assert len(_records(data)) == 1
    check_in_child(models, 60, cache_dir=data, python=SEGV)  # no child: it would have crashed

    with pytest.raises(ModelLoadError, match=r"crashed its interpreter \(SIGSEGV\)"):
        check_in_child(models, 60, cache_dir=data, options=BackendOptions(threads=2), python=SEGV)
    card = ModelCard.path_for(model)
    card.write_text(card.read_text().replace('"1.0.0"', '"1.0.1"'))
    with pytest.raises(ModelLoadError, match="crashed its interpreter"):
        check_in_child(models, 60, cache_dir=data, python=SEGV)
    check_in_child(models, 60, cache_dir=data)  # the changed card passes: recorded too
    model.write_bytes(model.read_bytes() + b"\0")
    with pytest.raises(ModelLoadError, match=str(model)):
        check_in_child(models, 60, cache_dir=data, python=SEGV)
    assert len(_records(data)) == 2  # crashes are never recorded


def test_a_model_that_fails_its_check_is_refused_at_every_start(tmp_path: Path) -> None:
    good = _copy("digits_edge_int8.onnx", tmp_path / "m")
    bad = _copy("digits_edge_int8.tflite", tmp_path / "m")
    bad.write_bytes(bad.read_bytes()[:200])  # truncated: the real runtime refuses it
    data = tmp_path / "data"
    for _ in range(2):
        with pytest.raises(ModelError, match="digits_edge_int8.tflite"):
            check_in_child([(good, None), (bad, None)], 60, cache_dir=data)
        with pytest.raises(ModelLoadError, match="crashed"):
            check_in_child([(good, None)], 60, cache_dir=data, python=SEGV)
        assert _records(data) == {}  # all or nothing: one child checked them together
    check_in_child([(good, None)], 60, cache_dir=data)
    with pytest.raises(ModelError, match="digits_edge_int8.tflite"):
        check_in_child(
            [(good, None), (bad, None)], 60, cache_dir=data
        )  # still refused; the good one is on record


def test_unreadable_records_mean_a_fresh_check(tmp_path: Path) -> None:
    model, data = _copy("digits_edge_int8.tflite", tmp_path / "m"), tmp_path / "data"
    data.mkdir()
    (data / CACHE_FILE).write_text('{"passed": ')  # torn
    with pytest.raises(ModelLoadError, match="crashed"):
        check_in_child([(model, None)], 60, cache_dir=data, python=SEGV)
    check_in_child([(model, None)], 60, cache_dir=data)
    assert len(_records(data)) == 1


def test_the_child_gets_the_daemons_backend_options() -> None:
    options = BackendOptions(
        threads=3,
        graph_optimization="basic",
        extra={"tflite_runtime": "litert"},
        onnx_providers=(OnnxProvider("CPUExecutionProvider", {"a": "1"}),),
        tflite_delegates=(TFLiteDelegate("xnnpack", threads=2),),
        dequantize=False,
    )
    assert options_from_json(json.loads(json.dumps(options_to_json(options)))) == options
