"""Under --log-json every stderr line is JSON: log records, native runtime output on fd 2
(LiteRT's C++ start-up line), the fatal `error:` line (a bind error of the local API among them)."""

from __future__ import annotations

import json
import socket
from pathlib import Path

from tests.edge.config.support import clean_env, cli, write_profile


def _records(stderr: str) -> list[dict[str, object]]:
    lines = stderr.splitlines()
    assert lines, "nothing on stderr"
    records = []
    for line in lines:
        try:
            records.append(json.loads(line))
        except ValueError:
            raise AssertionError(f"not a JSON line: {line!r}\nstderr:\n{stderr}") from None
    return records


def test_predict_with_litert_is_all_json(tmp_path: Path) -> None:
    features = tmp_path / "features.json"
    features.write_text(json.dumps([0.0] * 64))
    profile = write_profile(tmp_path)
    result = cli(
        "--log-json", "agent", "predict", "-c", str(profile), str(features), str(tmp_path / "absent.npy")
    )
    assert result.returncode == 1  # one input is missing
    records = _records(result.stderr)
    native = [r for r in records if r["logger"] == "edgecascade.native"]
    assert any("TensorFlow Lite" in str(r["msg"]) for r in native), records
    assert {"ts", "level", "logger", "msg"} <= set(records[0])
    errors = [r for r in records if r["level"] == "error"]
    assert [r["msg"] for r in errors] == [
        f"error: {tmp_path / 'absent.npy'}: cannot read input (No such file or directory)"
    ]


def test_run_with_a_startup_error_is_all_json(tmp_path: Path) -> None:
    # The API port is taken: the CLI's fatal line, JSON, says why.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        profile = write_profile(tmp_path, f"[api]\nport = {port}\n")
        env = clean_env(EDGECASCADE_SERVE__PORT="1")  # another command's variable: a JSON warning
        result = cli("--log-json", "agent", "run", "-c", str(profile), env=env, timeout=90)
    assert result.returncode == 1
    records = _records(result.stderr)
    by_logger = {r["logger"]: r for r in records}
    assert records[-1]["level"] == "error" and "local API could not listen" in str(records[-1]["msg"])
    assert "address already in use" in str(records[-1]["msg"])
    assert "EDGECASCADE_SERVE__PORT" in str(by_logger["edgecascade.shared.config_env"]["msg"])


def test_a_bad_profile_under_log_json_is_one_json_line(tmp_path: Path) -> None:
    profile = write_profile(tmp_path, '[cloud]\ntokn = "S3CRET"\n')
    result = cli("--log-json", "agent", "run", "-c", str(profile))
    assert result.returncode == 1
    records = _records(result.stderr)
    assert len(records) == 1 and "cloud.tokn: unknown key" in str(records[0]["msg"])
    assert "S3CRET" not in result.stderr


def test_a_usage_error_is_one_json_line() -> None:
    result = cli("--log-json", "agent", "predict")
    assert result.returncode == 2
    records = _records(result.stderr)
    assert len(records) == 1 and records[0]["level"] == "error"
    assert "the following arguments are required: INPUT" in str(records[0]["msg"])
