"""The [camera] profile section: defaults, validation, paths relative to the profile file."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgecascade.edge.config import load_profile
from edgecascade.edge.sources.capture import SourceSpec
from edgecascade.shared.errors import ConfigError


def _profile(tmp_path: Path, camera: str) -> Path:
    path = tmp_path / "conf" / "device.toml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(
        'profile = "t"\ndata_dir = "data"\nmemory_budget_mb = 100\n[model]\npath = "m.tflite"\n'
        f"[camera]\n{camera}\n"
    )
    return path


def test_defaults_are_off_and_bounded(tmp_path: Path) -> None:
    camera = load_profile(_profile(tmp_path, ""), environ={}).camera
    assert not camera.enabled and camera.source == "0" and camera.queue_size == 4
    assert camera.publish_events and camera.event_qos == 0 and not camera.loop and not camera.realtime


def test_relative_file_resolves_against_the_profile_and_urls_stay(tmp_path: Path) -> None:
    camera = load_profile(_profile(tmp_path, 'source = "videos/a.avi"'), environ={}).camera
    assert camera.source == str((tmp_path / "conf" / "videos" / "a.avi").resolve())
    url = "rtsp://admin:pw@10.0.0.5:554/stream1"
    assert load_profile(_profile(tmp_path, f'source = "{url}"'), environ={}).camera.source == url
    env = {"EDGECASCADE_CAMERA__SOURCE": "2", "EDGECASCADE_CAMERA__FPS": "2.5"}
    camera = load_profile(_profile(tmp_path, ""), environ=env).camera
    assert (camera.source, camera.fps) == ("2", 2.5)


@pytest.mark.parametrize(
    ("body", "key"),
    [
        ("fps = 0", "camera.fps"),
        ("queue_size = 0", "camera.queue_size"),
        ("reopen_min_s = 5\nreopen_max_s = 1", "camera"),
        ('source = "  "', "camera.source"),
        ("event_qos = 2", "camera.event_qos"),
        ("fsp = 10", "camera.fsp"),
    ],
)
def test_bad_values_name_the_key(tmp_path: Path, body: str, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_profile(_profile(tmp_path, body), environ={})
    assert info.value.key == key


def test_source_kinds_and_redaction() -> None:
    assert SourceSpec.parse("0") == SourceSpec("device", 0, "device:0")
    stream = SourceSpec.parse("rtsp://admin:pw@10.0.0.5:554/stream1")
    assert stream.kind == "stream" and stream.live and stream.name == "rtsp://***@10.0.0.5:554/stream1"
    assert SourceSpec.parse("rtsp://10.0.0.5/s").name == "rtsp://10.0.0.5/s"
    assert SourceSpec.parse("/data/a.avi").kind == "file" and not SourceSpec.parse("/data/a.avi").live
