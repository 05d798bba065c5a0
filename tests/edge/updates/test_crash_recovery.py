"""kill -9 mid-download and mid-swap (real subprocess devices), a broker restart mid-transfer,
and a device that was offline during the push."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edgecascade.cloud.fleet.manifest_builder import build_manifest
from edgecascade.edge.updates.store import sha256_file
from edgecascade.shared.manifest import public_key_b64
from edgecascade.tools.mqtt_broker import BrokerProcess
from tests.edge.updates.helpers import (
    FLEET,
    MODELS,
    Device,
    copy_model,
    make_profile,
    start_fleet,
    wait_until,
)

REPO = Path(__file__).parents[3]


def _write_profile(root: Path, device: str, port: int, key: Ed25519PrivateKey) -> Path:
    factory = copy_model(MODELS / "digits_edge_fp32.onnx", root / device / "factory")
    path = root / device / "profile.toml"
    path.write_text(
        f'profile = "x86-store-pc"\ndevice_id = "{device}"\nfleet = "{FLEET}"\n'
        f'data_dir = "data"\nmemory_budget_mb = 300\n'
        f'[runtime]\nwarmup_runs = 0\n[model]\npath = "{factory}"\n'
        f"[mqtt]\nenabled = true\nport = {port}\nreconnect_max_s = 1.0\n"
        f'[updates]\nenabled = true\npublic_key = "{public_key_b64(key.public_key())}"\n'
        f"stall_timeout_s = 1.0\ndownload_timeout_s = 60.0\n"
    )
    return path


def _spawn(profile: Path) -> subprocess.Popen[bytes]:
    log = open(profile.parent / "device.log", "ab")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(
        [sys.executable, "-m", "edgecascade.edge.updates.run_device", "--config", str(profile)],
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def _kill9(proc: subprocess.Popen[bytes]) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)


def _pointer_version(profile: Path) -> str | None:
    pointer = profile.parent / "data" / "models" / "digits-edge" / "active"
    if not pointer.exists():
        return None
    data = json.loads(pointer.read_text())
    current = Path(data["current"]["path"])
    # Whatever the pointer names is complete: its bytes match its card's hash.
    card = json.loads(current.with_name(current.name + ".card.json").read_text())
    assert sha256_file(current) == card["sha256"]
    return str(data["current"]["version"])


def test_kill9_mid_download_resumes_and_mid_swap_serves_old_or_new(
    broker: BrokerProcess, tmp_path: Path, signing_key: Ed25519PrivateKey, model_v2: Path
) -> None:
    profile = _write_profile(tmp_path, "k1", broker.port, signing_key)
    fleet = start_fleet(broker.port, signing_key, tmp_path / "fleet")
    proc = _spawn(profile)
    try:
        wait_until(lambda: "k1" in fleet.board.statuses(), what="device online")
        manifest, payloads = build_manifest(model_v2, fleet=FLEET, target="device:k1", chunk_size=512)
        blob, data = payloads[0].blob, payloads[0].data
        half = len(blob.chunk_sha256) // 2
        # Only the first half of the chunks is on the broker: the download stops half way.
        for i in range(half):
            start, end = blob.chunk_bounds(i)
            fleet.connection.publish(f"{blob.topic}/{i}", data[start:end], retain=True)
        signed, _ = fleet.push(manifest, [])
        wait_until(
            lambda: (
                (fleet.board.statuses()["k1"].progress or 0) >= 0.4
                and fleet.board.statuses()["k1"].push_id == signed.push_id
            ),
            what="half the download",
        )
        _kill9(proc)
        assert _pointer_version(profile) is None  # still the factory model

        proc = _spawn(profile)
        wait_until(
            lambda: (
                fleet.board.statuses()["k1"].state == "downloading"
                and fleet.board.statuses()["k1"].updated_at > signed.issued_at
                and fleet.connection.connected.is_set()
            ),
            what="resumed download",
        )
        resumed_at = fleet.board.statuses()["k1"].bytes_received
        assert resumed_at >= half * blob.chunk_size * 0.8  # kept what it had before the kill
        fleet.publish_payloads(payloads)
        done = fleet.board.wait_for(signed.push_id, ["k1"], 30)["k1"]
        assert done is not None and done.state == "active" and done.active_version == "1.1.0"
        assert _pointer_version(profile) == "1.1.0"

        # Mid-swap: kill the moment the new version is installed (testing/loading/swapping),
        # then check that a restart serves a complete old-or-new model and converges.
        _kill9(proc)
        proc = _spawn(profile)
        v3 = tmp_path / "v3" / "digits_edge_fp32.onnx"
        from tests.edge.updates.helpers import fine_tuned

        fine_tuned(MODELS / "digits_edge_fp32.onnx", v3, "1.2.0", seed=3)
        manifest, payloads = build_manifest(v3, fleet=FLEET, target="device:k1")
        wait_until(lambda: fleet.board.statuses()["k1"].state == "active", what="restarted")
        signed, _ = fleet.push(manifest, payloads)
        installed = profile.parent / "data" / "models" / "digits-edge" / "versions" / "1.2.0"
        wait_until(installed.exists, what="1.2.0 installed")
        _kill9(proc)
        assert _pointer_version(profile) in {"1.1.0", "1.2.0"}
        proc = _spawn(profile)
        done = fleet.board.wait_for(signed.push_id, ["k1"], 30)["k1"]
        wait_until(lambda: fleet.board.statuses()["k1"].active_version == "1.2.0", what="converged")
        assert _pointer_version(profile) == "1.2.0"
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(10)
        fleet.connection.stop()


def test_broker_restart_mid_transfer_and_offline_device_converges(
    broker: BrokerProcess, tmp_path: Path, signing_key: Ed25519PrivateKey, model_v2: Path
) -> None:
    online = Device.start(make_profile(tmp_path, "on", broker.port, signing_key.public_key(), groups=["g"]))
    offline_profile = make_profile(tmp_path, "off", broker.port, signing_key.public_key(), groups=["g"])
    fleet = start_fleet(broker.port, signing_key, tmp_path / "fleet")
    late: Device | None = None
    try:
        wait_until(lambda: "on" in fleet.board.statuses(), what="device status")
        manifest, payloads = build_manifest(model_v2, fleet=FLEET, target="group:g", chunk_size=512)
        blob, data = payloads[0].blob, payloads[0].data
        half = len(blob.chunk_sha256) // 2
        part = [payloads[0]]
        for i in range(half):
            start, end = blob.chunk_bounds(i)
            fleet.publish_retained(f"{blob.topic}/{i}", data[start:end])  # re-sent on reconnect
        signed, _ = fleet.push(manifest, [])
        wait_until(lambda: (fleet.board.statuses()["on"].progress or 0) >= 0.4, what="half the download")
        broker.restart()  # no persistence: every retained message is gone
        wait_until(
            lambda: fleet.connection.connected.is_set() and online.connection.connected.is_set(),
            what="reconnect",
        )
        fleet.publish_payloads(part)
        done = fleet.board.wait_for(signed.push_id, ["on"], 30)["on"]
        assert done is not None and done.state == "active"
        assert online.version == "1.1.0"

        # A device that was off during the push gets the retained group manifest when it comes up.
        late = Device.start(offline_profile)
        done = fleet.board.wait_for(signed.push_id, ["off"], 30)["off"]
        assert done is not None and done.state == "active"
        assert late.version == "1.1.0"
    finally:
        online.stop()
        if late:
            late.stop()
        fleet.connection.stop()
