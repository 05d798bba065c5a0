"""`edgecascade fleet keygen/push/status/rollback/promote` against a real broker and devices."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from edgecascade.cli import main
from edgecascade.shared.manifest import load_private_key
from edgecascade.tools.mqtt_broker import BrokerProcess
from tests.edge.updates.helpers import FLEET, Device, make_profile, wait_until


def test_fleet_cli_push_canary_promote_status_rollback(
    broker: BrokerProcess, tmp_path: Path, model_v2: Path, model_v3: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key_path = tmp_path / "fleet" / "signing.key"
    assert main(["fleet", "keygen", "--key", str(key_path)]) == 0
    assert "public_key = " in capsys.readouterr().out
    assert key_path.stat().st_mode & 0o077 == 0
    public = load_private_key(key_path).public_key()
    devices = [
        Device.start(make_profile(tmp_path, f"d{i}", broker.port, public, groups=["g"])) for i in range(2)
    ]
    common = [
        "--fleet",
        FLEET,
        "--broker",
        f"127.0.0.1:{broker.port}",
        "--key",
        str(key_path),
        "--state-dir",
        str(tmp_path / "fleet"),
    ]
    try:
        wait_until(lambda: all(d.connection.connected.is_set() for d in devices), what="devices online")
        rc = main(["fleet", "push", str(model_v2), "--target", "group:g", "--timeout", "30", *common])
        out = capsys.readouterr().out
        assert rc == 0, out
        assert "sent to 2 device(s): d0, d1" in out and "active: 2: d0, d1" in out

        rc = main(
            [
                "fleet",
                "push",
                str(model_v3),
                "--target",
                "group:g",
                "--canary",
                "50",
                "--timeout",
                "30",
                *common,
            ]
        )
        out = capsys.readouterr().out
        assert rc == 0 and "canary: 1 device(s)" in out, out
        assert [d.version for d in devices] == ["1.2.0", "1.1.0"]

        assert main(["fleet", "promote", "--timeout", "30", *common]) == 0
        assert "active: 2: d0, d1" in capsys.readouterr().out
        assert [d.version for d in devices] == ["1.2.0", "1.2.0"]

        # Read-only: no signing key, no state folder.
        assert (
            main(
                ["fleet", "status", "--wait", "0.2", "--fleet", FLEET, "--broker", f"127.0.0.1:{broker.port}"]
            )
            == 0
        )
        table = capsys.readouterr().out.splitlines()
        assert table[0].split()[:4] == ["DEVICE", "MODEL", "VERSION", "STATE"]
        assert [line.split()[:4] for line in table[1:]] == [
            ["d0", "digits-edge", "1.2.0", "active"],
            ["d1", "digits-edge", "1.2.0", "active"],
        ]

        assert (
            main(
                [
                    "fleet",
                    "rollback",
                    "--name",
                    "digits-edge",
                    "--target",
                    "group:g",
                    "--timeout",
                    "30",
                    *common,
                ]
            )
            == 0
        )
        assert "rolled_back: 2" in capsys.readouterr().out
        assert [d.version for d in devices] == ["1.1.0", "1.1.0"]

        assert main(["fleet", "rollback", "--name", "nope", "--target", "all", *common]) == 1
        assert "no earlier push of nope" in capsys.readouterr().err
    finally:
        for d in devices:
            d.stop()


def test_fleet_cli_push_over_http_places_the_artifact_for_the_route(
    broker: BrokerProcess, tmp_path: Path, model_v2: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.edge.updates.artifact_server import ArtifactServer

    key_path = tmp_path / "fleet" / "signing.key"
    assert main(["fleet", "keygen", "--key", str(key_path)]) == 0
    device = Device.start(make_profile(tmp_path, "d1", broker.port, load_private_key(key_path).public_key()))
    common = ["--fleet", FLEET, "--broker", f"127.0.0.1:{broker.port}", "--key", str(key_path)]
    common += ["--state-dir", str(tmp_path / "fleet")]
    push = ["fleet", "push", str(model_v2), "--target", "device:d1", "--route", "http", "--timeout", "30"]
    with ArtifactServer(tmp_path / "artifacts") as server:
        try:
            capsys.readouterr()
            assert main([*push, "--base-url", server.url, *common]) == 1  # no --artifacts-dir
            assert "--artifacts-dir" in capsys.readouterr().err
            wait_until(lambda: device.connection.connected.is_set(), what="device online")
            rc = main([*push, "--base-url", server.url, "--artifacts-dir", str(server.root), *common])
            out = capsys.readouterr().out
            assert rc == 0 and "active: 1: d1" in out, out
            placed = server.root / "digits-edge" / "1.1.0" / model_v2.name
            assert placed.read_bytes() == model_v2.read_bytes()
            assert device.version == "1.1.0"
            assert {e.path for e in server.served.entries()} == {"digits-edge/1.1.0/" + model_v2.name}
        finally:
            device.stop()


def test_fleet_wide_push_after_a_device_push_reaches_every_device_also_after_a_restart(
    broker: BrokerProcess, tmp_path: Path, model_v2: Path, model_v3: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before: the retained device manifest always won, `--target all` reported `no answer`."""
    from edgecascade.shared.mqtt import MqttConnection, MqttSettings, Topics

    key_path = tmp_path / "fleet" / "signing.key"
    assert main(["fleet", "keygen", "--key", str(key_path)]) == 0
    public = load_private_key(key_path).public_key()
    devices = [Device.start(make_profile(tmp_path, f"d{i}", broker.port, public)) for i in range(2)]
    common = ["--fleet", FLEET, "--broker", f"127.0.0.1:{broker.port}", "--key", str(key_path)]
    common += ["--state-dir", str(tmp_path / "fleet"), "--timeout", "30"]
    try:
        wait_until(lambda: all(d.connection.connected.is_set() for d in devices), what="devices online")
        capsys.readouterr()
        assert main(["fleet", "push", str(model_v2), "--target", "device:d0", *common]) == 0
        assert "active: 1: d0" in capsys.readouterr().out
        rc = main(["fleet", "push", str(model_v3), "--target", "all", *common])
        out = capsys.readouterr().out
        assert rc == 0 and "active: 2: d0, d1" in out and "no answer" not in out, out
        assert [d.version for d in devices] == ["1.2.0", "1.2.0"]

        # The push cleared the older device-level manifest: nothing retained there any more.
        probe = MqttConnection(MqttSettings(port=broker.port, client_id="probe"))
        retained: list[bytes] = []
        probe.subscribe(
            Topics(FLEET).manifest_device("digits-edge", "d0"), lambda m: retained.append(bytes(m.payload))
        )
        assert probe.start(wait_s=5)
        time.sleep(0.5)
        probe.stop()
        assert retained == []

        for i, device in enumerate(devices):
            device.stop()
            devices[i] = Device.start(device.profile)
        wait_until(lambda: all(d.connection.connected.is_set() for d in devices), what="devices back")
        time.sleep(0.5)  # retained manifests are in
        assert [d.version for d in devices] == ["1.2.0", "1.2.0"]
        assert [(d.updater.status.state, d.updater.refusals.count) for d in devices] == [("active", 0)] * 2
    finally:
        for d in devices:
            d.stop()


def test_keygen_into_a_folder_or_below_a_file_names_the_flag(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a_file = tmp_path / "taken"
    a_file.write_text("x")
    for key, expected in [
        (tmp_path, "--key: is a folder; give the key's file name"),
        (
            a_file / "signing.key",
            f"--key: cannot write {a_file / 'signing.key'}: a part of its folder is a file",
        ),
    ]:
        assert main(["fleet", "keygen", "--key", str(key)]) == 1
        err = capsys.readouterr().err
        assert expected in err and "Traceback" not in err, err


@pytest.mark.parametrize("value", ["0", "4097", "abc"])
def test_chunk_size_must_fit_a_broker_message(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["fleet", "push", "model.onnx", "--target", "all", "--chunk-kb", value])
    assert exited.value.code == 2 and "--chunk-kb" in capsys.readouterr().err
