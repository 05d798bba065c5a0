"""The fleet's own records (`<state-dir>/pushes.json`, `manifests/`, `blobs/`): damaged ones are
named in one error line, never a traceback, and a damaged kept artifact is written again."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from edgecascade.cli import main
from edgecascade.tools.mqtt_broker import BrokerProcess

DAMAGED_RECORDS = {
    "truncated": b'[{"push_id": "ab12", "name": "digits-edge", "vers',
    "not_json": b"\xff\xfe garbage",
    "wrong_shape": b'{"push_id": "ab12"}',
    "unknown_field": b'[{"push_id": "ab12", "nom": "x"}]',
    "deep": b"[" * 100_000,
}


def _common(tmp_path: Path, port: int) -> list[str]:
    key = tmp_path / "signing.key"
    if not key.exists():
        assert main(["fleet", "keygen", "--key", str(key)]) == 0
    return [
        "--fleet",
        "north",
        "--broker",
        f"127.0.0.1:{port}",
        "--key",
        str(key),
        "--state-dir",
        str(tmp_path / "fleet"),
    ]


@pytest.mark.parametrize("damage", sorted(DAMAGED_RECORDS))
def test_damaged_push_records_are_named_and_never_a_traceback(
    damage: str, broker: BrokerProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    common = _common(tmp_path, broker.port)
    records = tmp_path / "fleet" / "pushes.json"
    records.parent.mkdir(parents=True, exist_ok=True)
    records.write_bytes(DAMAGED_RECORDS[damage])
    capsys.readouterr()
    for command in (["promote"], ["rollback", "--name", "digits-edge", "--target", "all"]):
        rc = main(["fleet", *command, "--timeout", "1", *common])
        err = capsys.readouterr().err
        assert rc == 1, err
        assert f"error: {records}: not a list of push records" in err, err
        assert "Traceback" not in err
    assert records.read_bytes() == DAMAGED_RECORDS[damage]  # left for the user to repair


def test_a_damaged_kept_artifact_is_written_again(
    broker: BrokerProcess, tmp_path: Path, model_v2: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    common = _common(tmp_path, broker.port)
    assert main(["fleet", "push", str(model_v2), "--target", "device:d0", "--timeout", "0.5", *common]) in (
        0,
        1,
    )
    blobs = sorted((tmp_path / "fleet" / "blobs").iterdir())
    assert blobs, "the push kept its artifact"
    whole = {b.name: b.read_bytes() for b in blobs}
    for blob in blobs:  # as a command killed mid-write by an older release left it
        blob.write_bytes(whole[blob.name][: len(whole[blob.name]) // 2])
    assert main(["fleet", "push", str(model_v2), "--target", "device:d1", "--timeout", "0.5", *common]) in (
        0,
        1,
    )
    for blob in blobs:
        assert hashlib.sha256(blob.read_bytes()).hexdigest() == blob.name
    assert not [p for p in (tmp_path / "fleet").rglob(".*.tmp")], "no temporary file left behind"
    capsys.readouterr()
