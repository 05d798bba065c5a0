"""The child-process candidate check, and signing round trips (no broker needed)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edgecascade.cloud.fleet.manifest_builder import build_manifest
from edgecascade.edge.updates.candidate_check import check_in_child
from edgecascade.shared.errors import UpdateError
from tests.edge.updates.helpers import MODELS, copy_model


def _manifest_file(artifact: Path, tmp_path: Path, **changes: object) -> Path:
    manifest, _ = build_manifest(artifact, fleet="t", target="all")
    if changes:
        manifest = manifest.model_copy(update=changes)
    path = tmp_path / "manifest.json"
    path.write_text(manifest.model_dump_json())
    return path


def test_good_candidate_passes_and_bad_ones_are_refused_with_reasons(tmp_path: Path) -> None:
    good = copy_model(MODELS / "digits_edge_int8.tflite", tmp_path / "good")
    check_in_child(good, _manifest_file(good, tmp_path), 30)

    manifest, _ = build_manifest(good, fleet="t", target="all")
    vector = manifest.golden.vectors[0]
    wrong = vector.model_copy(update={"expected": list(reversed(vector.expected))})
    bad_golden = manifest.golden.model_copy(update={"vectors": [wrong]})
    path = tmp_path / "bad_golden.json"
    path.write_text(manifest.model_copy(update={"golden": bad_golden}).model_dump_json())
    with pytest.raises(UpdateError, match="golden vector 0"):
        check_in_child(good, path, 30)

    truncated = copy_model(MODELS / "digits_edge_int8.tflite", tmp_path / "trunc")
    truncated.write_bytes(truncated.read_bytes()[:700])
    with pytest.raises(UpdateError, match="failed to load"):
        check_in_child(truncated, _manifest_file(good, tmp_path), 30)


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
    for change in ({"version": "9.9.9"}, {"min_agent_version": "0.0.1"}, {"profiles": ["x"]}):
        with pytest.raises(UpdateError, match="bad signature"):
            signed.model_copy(update=change).verify(key.public_key())
    with pytest.raises(UpdateError, match="bad signature"):
        signed.verify(Ed25519PrivateKey.generate().public_key())
    with pytest.raises(UpdateError, match="unsigned"):
        manifest.verify(key.public_key())
