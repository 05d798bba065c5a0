"""`fleet push` of a model that is not the digits classifier, with the user's own golden inputs,
to a real agent (`edgecascade agent run`) over a real Mosquitto. The push runs with edge/,
tools/, scikit-learn, onnx and the TFLite runtimes blocked from import, as with the `cloud`
extra alone; the golden outputs are computed with the candidate and checked on the device."""

from __future__ import annotations

import ast
import hashlib
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import requests

from edgecascade.cli import main
from edgecascade.shared.features.spec import FeatureSpec, VectorEncoding
from edgecascade.shared.manifest import GoldenTensor, load_private_key, public_key_b64
from edgecascade.shared.model_card import ModelCard, TensorCard
from edgecascade.tools.mqtt_broker import BrokerProcess, free_port
from tests.edge.daemon.support import DaemonProcess
from tests.edge.updates.helpers import FLEET, start_fleet

REPO = Path(__file__).resolve().parents[3]
NAME = "tiny-mix"

# Runs `edgecascade` with what the `cloud` extra lacks made unimportable.
BLOCKED_CLI = """
import importlib.abc, sys
BLOCKED = ("edgecascade.edge", "edgecascade.tools", "sklearn", "skl2onnx", "onnx", "ai_edge_litert",
           "tflite_runtime", "tensorflow")
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if any(name == b or name.startswith(b + ".") for b in BLOCKED):
            raise ModuleNotFoundError(f"blocked for this test: {name}", name=name)
        return None
sys.meta_path.insert(0, Block())
from edgecascade.cli import main
rc = main(sys.argv[1:])
print("loaded:", sorted(m for m in sys.modules if any(m == b or m.startswith(b + ".") for b in BLOCKED)))
sys.exit(rc)
"""


def tiny_model(path: Path, version: str, seed: int) -> Path:
    """x float32[N, 6] -> scores = softmax(x W + b) [N, 3], embedding = tanh(x V) [N, 4], from
    numpy weights through onnx.helper; its card beside it."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    weights = {
        "W": rng.standard_normal((6, 3)).astype(np.float32),
        "b": rng.standard_normal(3).astype(np.float32),
        "V": rng.standard_normal((6, 4)).astype(np.float32),
    }
    nodes = [
        helper.make_node("MatMul", ["x", "W"], ["xw"]),
        helper.make_node("Add", ["xw", "b"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["scores"], axis=-1),
        helper.make_node("MatMul", ["x", "V"], ["xv"]),
        helper.make_node("Tanh", ["xv"], ["embedding"]),
    ]
    graph = helper.make_graph(
        nodes,
        NAME,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 6])],
        [
            helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", 3]),
            helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["N", 4]),
        ],
        initializer=[numpy_helper.from_array(v, k) for k, v in weights.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    data = path.read_bytes()
    ModelCard(
        name=NAME,
        version=version,
        backend="onnx",
        file=path.name,
        sha256=hashlib.sha256(data).hexdigest(),
        size_bytes=len(data),
        dataset="none: random weights made in the test",
        heldout_accuracy=0.0,
        heldout_size=0,
        quantization="none",
        inputs=[TensorCard(name="x", dtype="float32", shape=[-1, 6])],
        outputs=[
            TensorCard(name="scores", dtype="float32", shape=[-1, 3]),
            TensorCard(name="embedding", dtype="float32", shape=[-1, 4]),
        ],
        probabilities_output="scores",
        labels=["a", "b", "c"],
        features=FeatureSpec(input_name="x", encoding=VectorEncoding(length=6)),
    ).save_beside(path)
    return path


def _profile(tmp: Path, factory: Path, broker_port: int, api_port: int, public_key: str) -> Path:
    path = tmp / "agent-1.toml"
    path.write_text(
        "\n".join(
            [
                'profile = "test-pc"',
                'device_id = "agent-1"',
                f'fleet = "{FLEET}"',
                f'data_dir = "{tmp / "agent-data"}"',
                "memory_budget_mb = 300",
                "[model]",
                f'name = "{NAME}"',
                f'path = "{factory}"',
                "[api]",
                f"port = {api_port}",
                "[mqtt]",
                "enabled = true",
                f"port = {broker_port}",
                "[updates]",
                "enabled = true",
                f'public_key = "{public_key}"',
                "watch_window_s = 0",
                "check_timeout_s = 30",
            ]
        )
        + "\n"
    )
    return path


def _served_version(daemon: DaemonProcess, x: np.ndarray) -> str:
    body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": list(x.shape), "data": x.ravel().tolist()}]}
    reply = requests.post(f"{daemon.url}/v2/models/{NAME}/infer", json=body, timeout=10)
    assert reply.status_code == 200, reply.text
    return str(reply.json()["model_version"])


def test_a_non_digits_model_is_pushed_with_user_goldens_to_a_real_agent(
    broker: BrokerProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key_path = tmp_path / "fleet" / "signing.key"
    assert main(["fleet", "keygen", "--key", str(key_path)]) == 0
    key = load_private_key(key_path)
    factory = tiny_model(tmp_path / "factory" / "tiny_mix.onnx", "1.0.0", seed=0)
    candidate = tiny_model(tmp_path / "v1.1" / "tiny_mix.onnx", "1.1.0", seed=1)
    golden = tmp_path / "golden"
    golden.mkdir()
    rng = np.random.default_rng(7)
    np.savez(golden / "case-0.npz", x=rng.standard_normal((2, 6)).astype(np.float32))
    np.save(golden / "case-1.npy", rng.standard_normal((3, 6)).astype(np.float32))  # one-input model
    api_port = free_port()
    profile = _profile(tmp_path, factory, broker.port, api_port, public_key_b64(key.public_key()))
    daemon = DaemonProcess(profile, api_port, tmp_path / "agent.log").start()
    x = np.ones((1, 6), dtype=np.float32)
    common = ["--fleet", FLEET, "--broker", f"127.0.0.1:{broker.port}", "--key", str(key_path)]
    common += ["--state-dir", str(tmp_path / "fleet")]
    push = [sys.executable, "-c", BLOCKED_CLI, "fleet", "push", str(candidate), "--target", "device:agent-1"]
    try:
        assert _served_version(daemon, x) == "1.0.0"
        # Goldens that do not fit the model: a clear error before anything is published.
        np.savez(tmp_path / "wrong.npz", input=np.zeros((1, 6), dtype=np.float32))
        done = subprocess.run(
            [*push, "--golden", str(tmp_path / "wrong.npz"), *common],
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=120,
        )
        assert done.returncode == 1, done.stdout + done.stderr
        assert "golden case 0 holds arrays ['input']; the model's inputs are ['x']" in done.stderr

        done = subprocess.run(
            [*push, "--golden", str(golden), "--timeout", "60", *common],
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=180,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert "active: 1: agent-1" in done.stdout and "loaded: []" in done.stdout, done.stdout
        assert _served_version(daemon, x) == "1.1.0"

        # The goldens are checked on the device: expected outputs that the candidate does not
        # give (one embedding value moved past the tolerance) keep it from serving.
        from edgecascade.cloud.fleet.manifest_builder import build_manifest

        third = tiny_model(tmp_path / "v1.2" / "tiny_mix.onnx", "1.2.0", seed=2)
        manifest, payloads = build_manifest(
            third, fleet=FLEET, target="device:agent-1", golden=golden, tolerance=1e-4
        )
        assert manifest.golden is not None
        case = manifest.golden.cases[1]
        assert [t.name for t in case.expected] == ["scores", "embedding"] and case.expected[1].shape == [3, 4]
        moved = case.expected[1].to_array().copy()
        moved[2, 1] += 0.01
        case = case.model_copy(
            update={"expected": [case.expected[0], GoldenTensor.from_array("embedding", moved)]}
        )
        golden_bad = manifest.golden.model_copy(update={"cases": [manifest.golden.cases[0], case]})
        fleet = start_fleet(broker.port, key, tmp_path / "fleet")
        try:
            signed, _ = fleet.push(manifest.model_copy(update={"golden": golden_bad}), payloads)
            st = fleet.board.wait_for(signed.push_id, ["agent-1"], 60)["agent-1"]
        finally:
            fleet.connection.stop()
        assert st is not None and st.state == "failed", st
        assert re.fullmatch(
            r"golden case 1: output 'embedding' differs by 0\.0(1|099+\d*) > tolerance 0\.0001",
            st.reason or "",
        ), st.reason
        assert st.active_version == "1.1.0" and _served_version(daemon, x) == "1.1.0"
    finally:
        daemon.stop()


def test_fleet_status_and_telemetry_are_read_only(
    broker: BrokerProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "no-such.key"
    assert (
        main(["fleet", "status", "--fleet", FLEET, "--broker", f"127.0.0.1:{broker.port}", "--wait", "0.1"])
        == 0
    )
    assert capsys.readouterr().out.split()[:2] == ["DEVICE", "MODEL"]
    assert main(["fleet", "telemetry", "--store", str(tmp_path / "telemetry.sqlite3")]) == 0
    assert "no telemetry stored yet" in capsys.readouterr().out
    assert not missing.exists()


def test_cloud_imports_neither_edge_nor_tools() -> None:
    found = []
    for path in sorted((REPO / "cloud").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            found += [
                f"{path.relative_to(REPO)}: {n}"
                for n in names
                if n.startswith(("edgecascade.edge", "edgecascade.tools"))
            ]
    assert found == []
