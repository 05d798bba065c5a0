"""The child-process candidate check, and signing round trips (no broker needed)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edgecascade.cloud.fleet.manifest_builder import build_manifest
from edgecascade.edge.local_model import LocalModel
from edgecascade.edge.updates.candidate_check import check_in_child
from edgecascade.shared.backends import BackendOptions
from edgecascade.shared.errors import UpdateError
from edgecascade.shared.manifest import Golden, GoldenTensor, GoldenVector, Manifest
from tests.edge.updates.helpers import MODELS, copy_model


def _manifest_file(artifact: Path, tmp_path: Path, **changes: object) -> Path:
    manifest, _ = build_manifest(artifact, fleet="t", target="all")
    if changes:
        manifest = manifest.model_copy(update=changes)
    path = tmp_path / "manifest.json"
    path.write_text(manifest.model_dump_json())
    return path


def _write(manifest: Manifest, path: Path) -> Path:
    path.write_text(manifest.model_dump_json())
    return path


def test_golden_cases_pass_and_mismatches_are_refused_with_reasons(tmp_path: Path, digits_split) -> None:  # type: ignore[no-untyped-def]
    _, held = digits_split
    good = copy_model(MODELS / "digits_edge_int8.tflite", tmp_path / "good")
    cases = [{"input": held.features[i : i + 2].astype(np.float32)} for i in range(0, 6, 2)]
    manifest, _ = build_manifest(good, fleet="t", target="all", golden=cases, tolerance=0.02)
    assert manifest.golden is not None and len(manifest.golden.cases) == 3
    expected = manifest.golden.cases[0].expected[0]
    assert (expected.name, expected.shape) == ("output_0", [2, 10])
    check_in_child(good, _write(manifest, tmp_path / "ok.json"), 30)

    # One expected output moved by more than the tolerance: refused, naming case and output.
    moved = expected.to_array().copy()
    moved[1, 3] += 0.5
    case0 = manifest.golden.cases[0].model_copy(
        update={"expected": [GoldenTensor.from_array("output_0", moved)]}
    )
    bad = manifest.golden.model_copy(update={"cases": [case0]})
    with pytest.raises(UpdateError, match=r"golden case 0: output 'output_0' differs by 0\.5"):
        check_in_child(good, _write(manifest.model_copy(update={"golden": bad}), tmp_path / "bad.json"), 30)

    renamed = case0.model_copy(update={"expected": [GoldenTensor.from_array("probs", moved)]})
    missing = manifest.golden.model_copy(update={"cases": [renamed]})
    with pytest.raises(UpdateError, match="has no output 'probs'"):
        check_in_child(good, _write(manifest.model_copy(update={"golden": missing}), tmp_path / "m.json"), 30)

    truncated = copy_model(MODELS / "digits_edge_int8.tflite", tmp_path / "trunc")
    truncated.write_bytes(truncated.read_bytes()[:700])
    with pytest.raises(UpdateError, match="failed to load"):
        check_in_child(truncated, _write(manifest, tmp_path / "t.json"), 30)


def test_without_goldens_the_candidate_is_load_tested_and_schema_1_goldens_still_check(
    tmp_path: Path, digits_split
) -> None:  # type: ignore[no-untyped-def]
    _, held = digits_split
    good = copy_model(MODELS / "digits_edge_int8.tflite", tmp_path / "good")
    check_in_child(good, _manifest_file(good, tmp_path), 30)
    truncated = copy_model(MODELS / "digits_edge_int8.tflite", tmp_path / "trunc")
    truncated.write_bytes(truncated.read_bytes()[:700])
    with pytest.raises(UpdateError, match="failed to load"):
        check_in_child(truncated, _manifest_file(good, tmp_path), 30)

    model = LocalModel.load(good, BackendOptions(warmup_runs=0))
    row = held.features[0].astype(np.float32)
    probs = model.probabilities(row[None, :])[0]
    model.close()
    legacy = Golden(tolerance=0.02, vectors=[GoldenVector(features=row.tolist(), expected=probs.tolist())])
    check_in_child(good, _manifest_file(good, tmp_path, golden=legacy), 30)
    wrong = Golden(
        tolerance=0.02, vectors=[GoldenVector(features=row.tolist(), expected=probs[::-1].tolist())]
    )
    with pytest.raises(UpdateError, match="golden vector 0"):
        check_in_child(good, _manifest_file(good, tmp_path, golden=wrong), 30)


def test_a_child_killed_by_a_signal_is_a_refusal_not_an_agent_crash(tmp_path: Path) -> None:
    """We found no model file that segfaults LiteRT 2.x or ORT 1.32 (both verify their inputs;
    150 byte-level mutations of the int8 .tflite gave clean errors), so this test proves the
    mechanism: the check's interpreter dies by a real SIGSEGV and the caller reports it."""
    good = copy_model(MODELS / "digits_edge_int8.tflite", tmp_path / "good")
    segv = [sys.executable, "-c", "import ctypes; ctypes.string_at(0)"]
    with pytest.raises(UpdateError, match=r"crashed its interpreter \(SIGSEGV\)"):
        check_in_child(good, _manifest_file(good, tmp_path), 30, python=segv)
    hang = [sys.executable, "-c", "import time; time.sleep(30)"]
    with pytest.raises(UpdateError, match="did not finish within"):
        check_in_child(good, _manifest_file(good, tmp_path), 0.5, python=hang)


def test_signature_covers_every_field() -> None:
    key = Ed25519PrivateKey.generate()
    manifest, _ = build_manifest(MODELS / "digits_edge_fp32.onnx", fleet="t", target="all")
    signed = manifest.signed(key)
    signed.verify(key.public_key())
    changes = (
        {"version": "9.9.9"},
        {"min_agent_version": "0.0.1"},
        {"profiles": ["x"]},
        {"target": "device:x"},
    )
    for change in (*changes, {"issued_at": signed.issued_at + 1}, {"rollback_of": "1.0.0"}):
        with pytest.raises(UpdateError, match="bad signature"):
            signed.model_copy(update=change).verify(key.public_key())
    with pytest.raises(UpdateError, match="bad signature"):
        signed.verify(Ed25519PrivateKey.generate().public_key())
    with pytest.raises(UpdateError, match="unsigned"):
        manifest.verify(key.public_key())
