"""kill -9 of the real `edgecascade agent run` at each step of a model and a lookup-table
update, at exact points (a SIGKILL the process sends itself from inside the step), then a
restart: the device serves a complete, tested model or table at once, its status converges
(never stuck in downloading or testing), and the next push applies. Also a full disk while a
chunk is stored and when the pointer is written: the push is reported failed naming it, the old
model serves, and the next push applies (before: the updater's thread died at the pointer, its
status stuck in "testing", and no push applied again until a restart; a chunk that could not be
stored stalled the download until its timeout).

test_crash_recovery.py covers kill -9 mid-download (resume) with the update-only device."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edgecascade.cloud.fleet.manager import FleetManager
from edgecascade.cloud.fleet.manifest_builder import build_manifest
from edgecascade.cloud.fleet.table_manifest_builder import build_table_manifest
from edgecascade.edge.updates.store import sha256_file
from edgecascade.shared.features.spec import ENCODING_VERSION
from edgecascade.shared.lookup import write_table
from edgecascade.shared.lookup.keys import content_key
from edgecascade.shared.manifest import public_key_b64
from edgecascade.shared.model_card import ModelCard
from edgecascade.tools.mqtt_broker import BrokerProcess, free_port
from tests.edge.updates.helpers import FLEET, MODELS, fine_tuned, start_fleet, wait_until

REPO = Path(__file__).parents[3]
DEVICE = "k9"

#: Runs the real CLI (`agent run`) with faults armed by EC_FAULT="<step>@<version>,...": the
#: process SIGKILLs itself at that step of that version's update; an "enospc-*" step raises
#: ENOSPC there once instead (a full disk).
_FAULTY_AGENT = r"""
import errno, os, signal, sys
from edgecascade.edge.updates import pipeline, staging, store, subscriber, table_pipeline

def wrap(owner, name, step, when, after=False):
    orig, fired = getattr(owner, name), []
    def fault():
        if not step.startswith("enospc-"):
            os.kill(os.getpid(), signal.SIGKILL)
        if not fired:
            fired.append(step)
            raise OSError(errno.ENOSPC, "No space left on device (injected)")
    def patched(*args, **kwargs):
        hit = when(*args, **kwargs)
        if hit and not after:
            fault()
        out = orig(*args, **kwargs)
        if hit and after:
            fault()
        return out
    setattr(owner, name, patched)

for spec in os.environ["EC_FAULT"].split(","):
    step, _, v = spec.partition("@")
    if step == "model-install":  # the verified artifact moved into .tmp-<v>, not yet renamed
        wrap(store, "fsync_dir", step, lambda path, v=v: path.name == ".tmp-" + v)
    elif step == "model-testing":  # installed, its candidate check starting
        wrap(pipeline, "check_in_child", step, lambda path, *a, v=v: path.parent.name == v)
    elif step == "model-pointer":  # the tested model pointed at, not yet swapped in
        wrap(store.UpdateStore, "set_active", step, lambda s, cur, prev, v=v: cur.version == v, after=True)
    elif step == "enospc-pointer":  # the tested model about to be pointed at
        wrap(store.UpdateStore, "set_active", step, lambda s, cur, prev, v=v: cur.version == v)
    elif step == "enospc-chunk":  # the first chunk written into staging
        wrap(staging.os, "pwrite", step, lambda fd, data, offset: True)
    elif step == "model-outcome":  # swapped in and pointed at, its outcome not yet written
        wrap(subscriber.ManifestSubscriber, "_finish", step,
             lambda s, m, outcome, v=v, **kw: s.kind == "model" and m.version == v)
    elif step == "table-testing":
        wrap(table_pipeline.TablePipeline, "_test", step, lambda s, inst, m, v=v: m.version == v)
    elif step == "table-swapped":  # the lookup serves the new table, its pointer not yet written
        wrap(store.VersionStore, "set_active", step,
             lambda s, cur, prev, v=v: s.what == "table" and cur.version == v)
    elif step == "table-outcome":
        wrap(subscriber.ManifestSubscriber, "_finish", step,
             lambda s, m, outcome, v=v, **kw: s.kind == "table" and m.version == v)
    elif step != "none":
        raise SystemExit("unknown fault " + step)
from edgecascade.cli import main
sys.exit(main(["agent", "run", "--config", sys.argv[1]]))
"""


class Agent:
    """The real daemon, started with a fault armed; `url` is its local API."""

    def __init__(self, root: Path, port: int, key: Ed25519PrivateKey) -> None:
        self.root, self.api = root, free_port()
        root.mkdir(parents=True, exist_ok=True)
        factory = MODELS / "digits_edge_fp32.onnx"
        self.profile = root / "profile.toml"
        self.profile.write_text(
            f'profile = "x86-store-pc"\ndevice_id = "{DEVICE}"\nfleet = "{FLEET}"\n'
            f'data_dir = "{root / "data"}"\nmemory_budget_mb = 300\n'
            f'[runtime]\nwarmup_runs = 0\n[model]\npath = "{factory}"\n'
            f"[api]\nport = {self.api}\n[telemetry]\nenabled = false\n[deferred]\nenabled = false\n"
            f"[mqtt]\nenabled = true\nport = {port}\nreconnect_max_s = 1.0\n"
            f'[updates]\nenabled = true\npublic_key = "{public_key_b64(key.public_key())}"\n'
            "stall_timeout_s = 1.0\ndownload_timeout_s = 30.0\nwatch_window_s = 0.0\n"
        )
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.api}"

    def start(self, fault: str) -> Agent:
        with open(self.root / "agent.log", "ab") as log:
            log.write(f"---- start, fault {fault}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                [sys.executable, "-c", _FAULTY_AGENT, str(self.profile)],
                cwd=REPO,
                env={**os.environ, "EC_FAULT": fault},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_until(self._ready, 30, what=f"agent ready (fault {fault})")
        return self

    def _ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"agent exited {self.proc.returncode}: {self.log()[-3000:]}")
        try:
            return requests.get(self.url + "/v2/health/ready", timeout=0.5).status_code == 200
        except requests.ConnectionError:
            return False

    def killed(self) -> None:
        """Wait for the fault's SIGKILL."""
        assert self.proc is not None
        assert self.proc.wait(30) == -signal.SIGKILL, self.log()[-3000:]

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(15)

    def log(self) -> str:
        return (self.root / "agent.log").read_text()

    def infer(self, features: np.ndarray) -> dict[str, Any]:
        body = {
            "inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP32", "data": features.tolist()}]
        }
        reply = requests.post(self.url + "/v2/models/digits-edge/infer", json=body, timeout=5)
        assert reply.status_code == 200, reply.text
        return dict(reply.json())

    def version(self) -> str:
        return str(self.infer(np.zeros(64, np.float32))["model_version"])

    def pointer(self, what: str = "model") -> str | None:
        """The version `active` names; asserts the file it names is complete."""
        store = self.root / "data" / ("models/digits-edge" if what == "model" else "tables")
        if not (store / "active").exists():
            return None
        current = json.loads((store / "active").read_text())["current"]
        path = Path(current["path"])
        if what == "model":
            assert sha256_file(path) == ModelCard.load_for(path).sha256  # never a half-written one
        return str(current["version"])


@pytest.fixture
def agent(broker: BrokerProcess, tmp_path: Path, signing_key: Ed25519PrivateKey) -> Iterator[Agent]:
    device = Agent(tmp_path / DEVICE, broker.port, signing_key)
    try:
        yield device
    finally:
        device.stop()


@pytest.fixture
def fleet(broker: BrokerProcess, tmp_path: Path, signing_key: Ed25519PrivateKey) -> Iterator[FleetManager]:
    manager = start_fleet(broker.port, signing_key, tmp_path / "fleet")
    try:
        yield manager
    finally:
        manager.connection.stop()


def _converged(fleet: FleetManager, version: str, kind: str = "model") -> None:
    def done() -> bool:
        board = fleet.board.table_statuses() if kind == "table" else fleet.board.statuses()
        st = board.get(DEVICE)
        return st is not None and st.state == "active" and st.active_version == version

    wait_until(done, 30, what=f"{kind} status active on {version}")


def _models(tmp_path: Path, versions: list[str]) -> dict[str, Path]:
    return {
        v: fine_tuned(MODELS / "digits_edge_fp32.onnx", tmp_path / v / "digits_edge_fp32.onnx", v, seed=i)
        for i, v in enumerate(versions)
    }


def _push(fleet: FleetManager, model: Path) -> str:
    manifest, payloads = build_manifest(model, fleet=FLEET, target=f"device:{DEVICE}")
    return fleet.push(manifest, payloads)[0].push_id


def test_kill9_at_each_step_of_a_model_update_serves_a_tested_model_and_converges(
    agent: Agent, fleet: FleetManager, tmp_path: Path
) -> None:
    models = _models(tmp_path, ["1.1.0", "1.2.0", "1.3.0", "1.4.0", "1.5.0"])
    store = agent.root / "data" / "models" / "digits-edge"
    agent.start("model-install@1.1.0")
    _push(fleet, models["1.1.0"])
    agent.killed()  # the verified download moved into .tmp-1.1.0, not yet a version
    assert agent.pointer() is None and (store / "versions" / ".tmp-1.1.0").is_dir()

    steps = [
        ("model-testing@1.2.0", "1.0.0", "1.1.0"),  # (fault, serving at once, converges to)
        ("model-pointer@1.3.0", "1.1.0", "1.2.0"),  # 1.2.0 was installed but never tested
        ("model-outcome@1.4.0", "1.3.0", "1.3.0"),  # the pointer was written: 1.3.0 serves
        ("none", "1.4.0", "1.4.0"),  # swapped, its outcome unwritten: 1.4.0 serves
    ]
    for fault, at_once, converged in steps:
        agent.start(fault)
        assert agent.version() in {at_once, converged}  # the re-apply may already be done
        _converged(fleet, converged)
        assert agent.version() == converged and agent.pointer() == converged
        if fault == "none":
            break
        version = fault.rpartition("@")[2]
        pushed = _push(fleet, models[version])
        agent.killed()
        outcomes = json.loads((store / "outcomes.json").read_text())
        assert pushed not in outcomes  # each kill came before the push's outcome was written
        # Before the pointer step the pointer names the old version; from it on, the new one.
        assert agent.pointer() == (converged if fault.startswith("model-testing") else version)
    _push(fleet, models["1.5.0"])  # the next push applies
    _converged(fleet, "1.5.0")
    assert agent.version() == "1.5.0" and agent.pointer() == "1.5.0"
    assert sorted(p.name for p in (store / "versions").iterdir()) == ["1.4.0", "1.5.0"]
    assert "Traceback" not in agent.log()


def test_a_full_disk_fails_the_push_and_the_next_push_applies(
    agent: Agent, fleet: FleetManager, tmp_path: Path
) -> None:
    models = _models(tmp_path, ["1.1.0", "1.2.0", "1.3.0"])
    agent.start("enospc-chunk@1.1.0,enospc-pointer@1.2.0")  # the chunk one: the first write
    for version, step in (("1.1.0", "cannot write chunk"), ("1.2.0", "1.2.0 not applied")):
        pushed = _push(fleet, models[version])
        done = fleet.board.wait_for(pushed, [DEVICE], 30)[DEVICE]
        assert done is not None and done.state == "failed", f"{step}: {done}"
        assert "storage error" in (done.reason or "") and "No space left" in (done.reason or "")
        assert step in agent.log()
        assert agent.version() == "1.0.0" and agent.pointer() is None
    # The updater lives on (before: its thread died at the first, the status stuck in testing).
    _push(fleet, models["1.3.0"])
    _converged(fleet, "1.3.0")
    assert agent.version() == "1.3.0" and agent.pointer() == "1.3.0"
    assert "Traceback" not in agent.log()


def _tables(out: Path, rows: np.ndarray) -> dict[str, Path]:
    """Real table files t1..t4 keyed by the rows' content keys, each answering another digit."""
    keys = np.frombuffer(b"".join(content_key(r, ENCODING_VERSION) for r in rows), np.uint8)
    tables = {}
    for i, version in enumerate(["t1", "t2", "t3", "t4"]):
        probs = np.zeros((len(rows), 10), np.float32)
        probs[:, i] = 1.0
        tables[version] = out / version / "digits.ectable"
        tables[version].parent.mkdir(parents=True)
        write_table(
            tables[version],
            keys.reshape(len(rows), -1),
            probs,
            name="digits",
            version=version,
            cloud_model="digits-cloud",
            cloud_model_version="1.0.0",
            encoding_version=ENCODING_VERSION,
            key_scheme="content",
            labels=[str(d) for d in range(10)],
        )
    return tables


def test_kill9_at_each_step_of_a_table_update_serves_a_valid_table_and_converges(
    agent: Agent, fleet: FleetManager, tmp_path: Path
) -> None:
    rows = np.random.default_rng(0).random((4, 64), dtype=np.float32)
    tables = _tables(tmp_path / "tables", rows)

    def served() -> str | None:
        provenance = agent.infer(rows[1])["parameters"]["provenance"][0]
        return provenance.get("table_version") if provenance["source"] == "table" else None

    def push(version: str) -> None:
        manifest, payloads = build_table_manifest(tables[version], fleet=FLEET, target=f"device:{DEVICE}")
        fleet.push(manifest, payloads)

    agent.start("table-testing@t1")
    push("t1")
    agent.killed()  # installed, never tested
    assert agent.pointer("table") is None and (agent.root / "data" / "tables" / "t1").is_dir()
    steps = [
        ("table-swapped@t2", None, "t1"),  # (fault, serving at once, converges to)
        ("table-outcome@t3", "t1", "t2"),  # t2 served before the kill, its pointer unwritten
        ("none", "t3", "t3"),  # t3 pointed at, its outcome unwritten
    ]
    for fault, at_once, converged in steps:
        agent.start(fault)
        assert served() in {at_once, converged}  # the re-apply may already be done
        _converged(fleet, converged, "table")
        assert served() == converged and agent.pointer("table") == converged
        if fault != "none":
            version = fault.rpartition("@")[2]
            push(version)
            agent.killed()
            # The table step's pointer is written after the swap: t2 is not pointed at, t3 is.
            assert agent.pointer("table") == (converged if version == "t2" else version)
    push("t4")
    _converged(fleet, "t4", "table")
    assert served() == "t4"
    assert "Traceback" not in agent.log()
