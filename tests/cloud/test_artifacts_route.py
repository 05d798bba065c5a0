"""`edgecascade cloud serve --artifacts-dir` serves model-update artifacts with range requests."""

from __future__ import annotations

import hashlib
from pathlib import Path

import requests

from edgecascade.cloud.artifacts import place_artifact
from tests.support.cloud_server import cloud_server


def test_cloud_serves_update_artifacts_with_ranges(cloud_repo: Path, tmp_path: Path) -> None:
    artifacts = tmp_path / "artifacts"
    data = bytes(range(256)) * 40
    place_artifact(artifacts, "digits-edge/1.1.0/model.onnx", data)
    with cloud_server(cloud_repo, extra_args=("--artifacts-dir", str(artifacts))) as server:
        url = f"{server.url}/artifacts/digits-edge/1.1.0/model.onnx"
        whole = requests.get(url, timeout=5)
        assert whole.status_code == 200 and whole.content == data
        assert whole.headers["ETag"].strip('"') == hashlib.sha256(data).hexdigest()
        part = requests.get(url, headers={"Range": "bytes=100-199"}, timeout=5)
        assert part.status_code == 206 and part.content == data[100:200]
        assert part.headers["Content-Range"] == f"bytes 100-199/{len(data)}"
        assert (
            requests.get(
                server.url + "/artifacts/digits-edge/1.1.0/../../../etc/passwd", timeout=5
            ).status_code
            == 404
        )
        assert requests.get(server.url + "/v2/health/ready", timeout=5).status_code == 200


def test_range_numbers_of_any_length_are_answered_never_a_500(cloud_repo: Path, tmp_path: Path) -> None:
    """int() refuses more than 4,300 digits: such a Range once ended in a 500 and a traceback."""
    artifacts = tmp_path / "artifacts"
    data = bytes(range(256)) * 4
    place_artifact(artifacts, "digits-edge/1.1.0/model.onnx", data)
    huge = "9" * 5000
    with cloud_server(cloud_repo, extra_args=("--artifacts-dir", str(artifacts))) as server:
        url = f"{server.url}/artifacts/digits-edge/1.1.0/model.onnx"
        answers = {
            header: requests.get(url, headers={"Range": header}, timeout=5)
            for header in (f"bytes={huge}-", f"bytes=0-{huge}", f"bytes=-{huge}", f"bytes={'0' * 5000}7-9")
        }
        statuses = {header[:12]: resp.status_code for header, resp in answers.items()}
        assert statuses == {
            "bytes=999999": 416,
            "bytes=0-9999": 206,
            "bytes=-99999": 206,
            "bytes=000000": 206,
        }
        assert answers[f"bytes=0-{huge}"].content == data
        assert answers[f"bytes=-{huge}"].content == data
        assert answers[f"bytes={'0' * 5000}7-9"].content == data[7:10]
        log = server.log_tail(200_000)
    assert "Traceback" not in log and "ERROR" not in log
