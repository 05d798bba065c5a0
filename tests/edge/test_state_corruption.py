"""The device's state in its data dir damaged between two runs of the real `edgecascade agent
run` (a bad SD card, a power cut on a careless file system, a user's edit): every JSON and
SQLite state file emptied, cut in half, replaced by garbage or by a directory; a stale -wal or
-journal of another database beside the telemetry buffer; the updated model's artifact or card
damaged. The agent always starts, serves the last good model (or the factory one), names each
file it set aside in a log line, never shows a traceback, and loses no record of an intact
telemetry buffer.

One agent (real Mosquitto, a real signed push of 1.1.0, telemetry records and deferred cases
made with the cloud unreachable) makes the state once; each case restores it and damages it."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edgecascade.cloud.fleet.manager import FleetManager
from edgecascade.cloud.fleet.manifest_builder import build_manifest
from edgecascade.shared.manifest import public_key_b64
from edgecascade.tools.mqtt_broker import BrokerProcess, free_port
from tests.edge.daemon.support import DaemonProcess
from tests.edge.updates.helpers import FLEET, MODELS, fine_tuned, start_fleet, wait_until

DEVICE = "sc1"
#: The state files a device keeps beside its telemetry buffer (relative to the data dir).
STATE_FILES = [
    "models/digits-edge/active",
    "models/digits-edge/outcomes.json",
    "models/digits-edge/instruction.json",
    "model_checks.json",
    "deferred.sqlite3",
    "answer_cache.sqlite3",
]
BUFFER = "telemetry.sqlite3"


@dataclass
class Device:
    profile: Path
    api: int
    data: Path
    template: Path
    fleet: FleetManager
    seqs: list[int]  # the telemetry records buffered in the template

    def restore(self) -> None:
        shutil.rmtree(self.data, ignore_errors=True)
        shutil.copytree(self.template, self.data, symlinks=True)

    def start(self, log: Path) -> DaemonProcess:
        return DaemonProcess(self.profile, self.api, log).start()


def _infer(url: str, features: np.ndarray) -> str:
    body = {"inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP32", "data": features.tolist()}]}
    reply = requests.post(url + "/v2/models/digits-edge/infer", json=body, timeout=5)
    assert reply.status_code == 200, reply.text
    return str(reply.json()["model_version"])


def _seqs(buffer: Path) -> list[int]:
    db = sqlite3.connect(buffer)
    try:
        return [seq for (seq,) in db.execute("SELECT seq FROM records ORDER BY seq")]
    finally:
        db.close()


@pytest.fixture(scope="module")
def device(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Device]:
    root = tmp_path_factory.mktemp("state")
    broker = BrokerProcess(workdir=root).start()
    key = Ed25519PrivateKey.generate()
    fleet = start_fleet(broker.port, key, root / "fleet")
    api = free_port()
    profile = root / "device.toml"
    profile.write_text(
        f'profile = "x86-store-pc"\ndevice_id = "{DEVICE}"\nfleet = "{FLEET}"\n'
        f'data_dir = "{root / "data"}"\nmemory_budget_mb = 300\n[runtime]\nwarmup_runs = 0\n'
        f'[model]\npath = "{MODELS / "digits_edge_fp32.onnx"}"\n'
        '[cascade]\npolicies = [{ kind = "max_prob", threshold = 0.68 }]\n'
        '[cloud]\nurl = "http://127.0.0.1:9"\ndeadline_s = 0.5\nretries = 0\n'
        f"[api]\nport = {api}\n[telemetry]\nflush_interval_ms = 10\n"
        f"[mqtt]\nenabled = true\nport = {broker.port}\nreconnect_max_s = 1.0\n"
        f'[updates]\nenabled = true\npublic_key = "{public_key_b64(key.public_key())}"\n'
        "stall_timeout_s = 1.0\nwatch_window_s = 0.0\n"
    )
    v2 = fine_tuned(MODELS / "digits_edge_fp32.onnx", root / "v2" / "digits_edge_fp32.onnx", "1.1.0")
    agent = DaemonProcess(profile, api, root / "first.log").start()
    try:
        manifest, payloads = build_manifest(v2, fleet=FLEET, target=f"device:{DEVICE}")
        signed, _ = fleet.push(manifest, payloads)
        done = fleet.board.wait_for(signed.push_id, [DEVICE], 30)[DEVICE]
        assert done is not None and done.state == "active"
        rng = np.random.default_rng(0)
        for _ in range(20):  # no ingester: every record stays buffered; hard cases are deferred
            assert _infer(agent.url, rng.random(64, dtype=np.float32)) == "1.1.0"
        buffer = root / "data" / BUFFER
        wait_until(lambda: len(_seqs(buffer)) >= 20, what="records committed")
    finally:
        agent.stop()
    # Everything in the file itself (the daemon leaves the buffer's -wal behind).
    db = sqlite3.connect(buffer)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    for name in ("-wal", "-shm"):
        buffer.with_name(buffer.name + name).unlink(missing_ok=True)
    template = root / "template"
    shutil.copytree(root / "data", template, symlinks=True)
    try:
        yield Device(profile, api, root / "data", template, fleet, _seqs(buffer))
    finally:
        fleet.connection.stop()
        broker.stop()


# -- damage ------------------------------------------------------------------------------------
def _empty(path: Path) -> None:
    path.write_bytes(b"")


def _half(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _garbage(path: Path) -> None:
    path.write_bytes(np.random.default_rng(1).bytes(3000))


def _directory(path: Path) -> None:
    path.unlink()
    (path / "inside").mkdir(parents=True)


def _unreadable(path: Path) -> None:
    path.chmod(0)


DAMAGE: dict[str, Callable[[Path], None]] = {
    "empty": _empty,
    "half": _half,
    "garbage": _garbage,
    "directory": _directory,
    "unreadable": _unreadable,
}


def _other_database(folder: Path, journal_mode: str) -> Path:
    """Another database's -wal or hot -journal, as a process killed mid-transaction leaves it."""
    other = folder / "other.sqlite3"
    code = (
        "import os, sqlite3, sys\n"
        "db = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
        f"db.execute('PRAGMA journal_mode={journal_mode}')\n"
        "db.execute('CREATE TABLE x (a)')\n"
        "db.executemany('INSERT INTO x VALUES (?)', [(os.urandom(500),) for _ in range(200)])\n"
        "db.execute('PRAGMA cache_size=1')\n"
        "db.execute('BEGIN')\n"
        "db.execute('UPDATE x SET a = randomblob(600)')\n"
        "os._exit(0)\n"
    )
    subprocess.run([sys.executable, "-c", code, str(other)], check=True)
    return other.with_name(other.name + ("-wal" if journal_mode == "WAL" else "-journal"))


def _logged(log: str, path: Path) -> bool:
    """A WARNING or ERROR line names `path`."""
    return any(str(path) in line and (" WARNING " in line or " ERROR " in line) for line in log.splitlines())


# -- tests -------------------------------------------------------------------------------------
@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damaged_state_files_never_stop_the_agent_nor_lose_buffered_records(
    device: Device, tmp_path: Path, damage: str
) -> None:
    if damage == "unreadable" and os.geteuid() == 0:
        pytest.skip("running as root: chmod 000 does not stop reads")
    device.restore()
    for name in STATE_FILES:
        DAMAGE[damage](device.data / name)
    log = tmp_path / "agent.log"
    try:
        agent = device.start(log)
    finally:
        for name in STATE_FILES:  # let the test's clean-up remove the folder
            target = device.data / name
            if target.exists() and not target.is_symlink():
                target.chmod(0o755 if target.is_dir() else 0o644)
    try:
        # The pointer is restored from its copy: the last good model serves, not the factory's.
        assert _infer(agent.url, np.zeros(64, np.float32)) == "1.1.0"
    finally:
        agent.stop()
    text = log.read_text()
    assert "Traceback" not in text
    for name in STATE_FILES:
        if damage == "empty" and name == "model_checks.json":
            continue  # an empty record of passed checks is no damage: the model is checked again
        assert _logged(text, device.data / name), f"no log line names {name}"
    assert set(device.seqs) <= set(_seqs(device.data / BUFFER))  # the intact buffer: none lost


@pytest.mark.parametrize("damage", ["other-wal", "other-journal", "empty", "garbage", "directory"])
def test_a_damaged_telemetry_buffer_is_set_aside_and_an_intact_one_keeps_every_record(
    device: Device, tmp_path: Path, damage: str
) -> None:
    device.restore()
    buffer = device.data / BUFFER
    if damage.startswith("other-"):
        wal = damage == "other-wal"
        stale = _other_database(tmp_path, "WAL" if wal else "DELETE")
        shutil.copyfile(stale, buffer.with_name(buffer.name + ("-wal" if wal else "-journal")))
    else:
        DAMAGE[damage](buffer)
    log = tmp_path / "agent.log"
    agent = device.start(log)
    try:
        assert _infer(agent.url, np.zeros(64, np.float32)) == "1.1.0"
        wait_until(lambda: len(_seqs(buffer)) > (len(device.seqs) if damage.startswith("other-") else 0))
    finally:
        agent.stop()
    text = log.read_text()
    assert "Traceback" not in text and _logged(text, buffer)
    after = _seqs(buffer)
    if damage.startswith("other-"):
        assert set(device.seqs) <= set(after)  # the buffer itself was intact: every record kept
    else:
        # Rebuilt: new records never reuse a lost one's number (the cloud would drop them).
        assert min(after) > max(device.seqs)


@pytest.mark.parametrize("damage", ["bit-flip", "truncated", "card"])
def test_a_damaged_updated_model_falls_back_then_its_push_installs_it_again(
    device: Device, tmp_path: Path, damage: str
) -> None:
    device.restore()
    artifact = device.data / "models" / "digits-edge" / "versions" / "1.1.0" / "digits_edge_fp32.onnx"
    if damage == "bit-flip":  # still a loadable model, with other weights
        data = bytearray(artifact.read_bytes())
        data[-200] ^= 0x01
        artifact.write_bytes(bytes(data))
    elif damage == "truncated":
        _half(artifact)
    else:
        _garbage(artifact.with_name(artifact.name + ".card.json"))
    log = tmp_path / "agent.log"
    agent = device.start(log)
    try:
        # The factory model serves at once (the push is still on the broker: it comes back).
        assert _infer(agent.url, np.zeros(64, np.float32)) in {"1.0.0", "1.1.0"}
        status = device.fleet.board.statuses
        wait_until(
            lambda: status()[DEVICE].state == "active" and status()[DEVICE].active_version == "1.1.0",
            what="1.1.0 installed again",
        )
        assert _infer(agent.url, np.zeros(64, np.float32)) == "1.1.0"
    finally:
        agent.stop()
    text = log.read_text()
    assert "Traceback" not in text
    assert sum("is damaged" in line for line in text.splitlines()) == 1


def test_a_file_in_place_of_a_store_folder_is_moved_aside(device: Device, tmp_path: Path) -> None:
    device.restore()
    folders = [device.data / "models" / "digits-edge" / "staging", device.data / "tables"]
    for folder in folders:
        shutil.rmtree(folder)
        folder.write_bytes(b"not a folder")
    log = tmp_path / "agent.log"
    agent = device.start(log)  # before: "model store ... is unusable", the agent did not start
    try:
        assert _infer(agent.url, np.zeros(64, np.float32)) == "1.1.0"
    finally:
        agent.stop()
    text = log.read_text()
    assert "Traceback" not in text and all(_logged(text, folder) for folder in folders)
    assert all(folder.is_dir() for folder in folders)
