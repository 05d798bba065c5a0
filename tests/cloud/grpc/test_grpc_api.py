"""The cloud API's V2 gRPC service against clients no one on the team wrote: tritonclient.grpc,
and a client compiled in this test from the protocol's proto (typed contents, not raw). Same
tokens, limits and metrics as REST; errors are gRPC status codes."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import requests
import tritonclient.grpc as triton
from tritonclient.utils import InferenceServerException

from edgecascade.cloud.repository import ModelSettings, add_version
from tests.support.cloud_server import CloudServer

PROTO = Path(__file__).resolve().parents[3] / "shared" / "v2" / "grpc" / "grpc_predict_v2.proto"
AUTH = {"authorization": "Bearer tok-store-1"}


@pytest.fixture(scope="module")
def server(
    cloud_repo: Path, tokens_file: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[CloudServer]:
    srv = CloudServer(cloud_repo, tokens_file=tokens_file, grpc=True).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def reference(models_dir: Path, digits_split) -> np.ndarray:
    from edgecascade.shared.backends import load_backend

    _, held = digits_split
    return load_backend(models_dir / "digits_cloud.onnx").predict({"input": held.features[:8]})[
        "probabilities"
    ]


def _input(rows: np.ndarray, name: str = "input", datatype: str = "FP32") -> triton.InferInput:
    inp = triton.InferInput(name, list(rows.shape), datatype)
    inp.set_data_from_numpy(rows)
    return inp


def _metric(server: CloudServer, name: str, labels: str) -> float:
    text = requests.get(server.url + "/metrics", timeout=5).text
    for line in text.splitlines():
        if line.startswith(f"{name}{{{labels}}}"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_tritonclient_health_metadata_and_infer(
    server: CloudServer, digits_split, reference: np.ndarray
) -> None:
    _, held = digits_split
    client = triton.InferenceServerClient(server.grpc_target)
    try:
        assert client.is_server_live() and client.is_server_ready()
        assert client.is_model_ready("digits-cloud") and client.is_model_ready("digits-cloud", "2.0.0")
        meta = client.get_server_metadata(as_json=True)
        assert meta["name"] == "edgecascade" and "binary_tensor_data" in meta["extensions"]
        model = client.get_model_metadata("digits-cloud", headers=AUTH, as_json=True)
        assert model["platform"] == "onnx_onnxv1" and model["versions"] == ["1.0.0", "2.0.0"]
        assert model["inputs"] == [{"name": "input", "datatype": "FP32", "shape": ["-1", "64"]}]
        before = _metric(server, "edgecascade_cloud_inferences_total", 'model="digits-cloud"')

        rows = held.features[:8].astype(np.float32)
        result = client.infer(
            "digits-cloud",
            [_input(rows)],
            outputs=[triton.InferRequestedOutput("probabilities")],
            request_id="grpc-1",
            headers=AUTH,
        )
        np.testing.assert_allclose(result.as_numpy("probabilities"), reference, rtol=1e-5, atol=1e-6)
        response = result.get_response()
        assert response.model_name == "digits-cloud" and response.model_version == "1.0.0"
        assert response.id == "grpc-1"
        assert [o.name for o in response.outputs] == ["probabilities"]  # only what was asked for
        assert len(response.raw_output_contents) == 1
        # All outputs when none are named; a pinned version answers as that version.
        every = client.infer("digits-cloud", [_input(rows[:2])], model_version="2.0.0", headers=AUTH)
        assert every.get_response().model_version == "2.0.0"
        assert every.as_numpy("label").tolist() == np.argmax(reference[:2], axis=1).tolist()
        # The REST metrics count gRPC inferences too (one dataplane).
        after = _metric(server, "edgecascade_cloud_inferences_total", 'model="digits-cloud"')
        assert after - before == 2
    finally:
        client.close()


@pytest.mark.parametrize(
    ("headers", "model", "status", "message"),
    [
        (None, "digits-cloud", "StatusCode.UNAUTHENTICATED", "missing bearer token"),
        (
            {"authorization": "Bearer nope"},
            "digits-cloud",
            "StatusCode.UNAUTHENTICATED",
            "unknown bearer token",
        ),
        (
            {"authorization": "Bearer tok-kiosk-2"},
            "digits-cloud",
            "StatusCode.PERMISSION_DENIED",
            "may not call",
        ),
        (AUTH, "no-such-model", "StatusCode.NOT_FOUND", "unknown model"),
    ],
)
def test_tokens_and_unknown_models_are_refused_as_over_rest(
    server: CloudServer, headers: dict[str, str] | None, model: str, status: str, message: str
) -> None:
    client = triton.InferenceServerClient(server.grpc_target)
    try:
        with pytest.raises(InferenceServerException) as info:
            client.infer(model, [_input(np.zeros((1, 64), np.float32))], headers=headers)
        assert info.value.status() == status
        assert message in (info.value.message() or "")
    finally:
        client.close()


def test_bad_inputs_are_invalid_argument_and_counted(server: CloudServer) -> None:
    client = triton.InferenceServerClient(server.grpc_target)
    before = _metric(server, "edgecascade_cloud_errors_total", 'status="400"')
    try:
        for inp in (
            _input(np.zeros((1, 63), np.float32)),  # wrong width
            _input(np.zeros((1, 64), np.float32), name="features"),  # wrong name
        ):
            with pytest.raises(InferenceServerException) as info:
                client.infer("digits-cloud", [inp], headers=AUTH)
            assert info.value.status() == "StatusCode.INVALID_ARGUMENT"
    finally:
        client.close()
    assert _metric(server, "edgecascade_cloud_errors_total", 'status="400"') - before == 2


def test_message_size_limit(cloud_repo: Path, tokens_file: Path) -> None:
    srv = CloudServer(
        cloud_repo, tokens_file=tokens_file, grpc=True, extra_args=("--grpc-max-message-bytes", "65536")
    )
    srv.start()
    client = triton.InferenceServerClient(srv.grpc_target)
    try:
        big = np.zeros((1000, 64), np.float32)  # 256 KB of raw input
        with pytest.raises(InferenceServerException) as info:
            client.infer("digits-cloud", [_input(big)], headers=AUTH)
        assert info.value.status() == "StatusCode.RESOURCE_EXHAUSTED"
        ok = client.infer("digits-cloud", [_input(big[:10])], headers=AUTH)
        assert ok.as_numpy("probabilities").shape == (10, 10)
    finally:
        client.close()
        srv.stop()


def test_batched_model_merges_concurrent_grpc_requests(server: CloudServer) -> None:
    client = triton.InferenceServerClient(server.grpc_target)
    done: list[object] = []
    try:
        for i in range(6):
            client.async_infer(
                "digits-batched",
                [_input(np.full((1, 64), i, np.float32))],
                callback=lambda result, error: done.append(error or result),
                headers=AUTH,
            )
        deadline = 10.0
        import time

        start = time.monotonic()
        while len(done) < 6 and time.monotonic() - start < deadline:
            time.sleep(0.02)
    finally:
        client.close()
    assert len(done) == 6 and not [d for d in done if isinstance(d, Exception)]
    # Six requests within the 300 ms window: one model call.
    assert _metric(server, "edgecascade_cloud_batch_size_count", 'model="digits-batched"') >= 1
    assert _metric(server, "edgecascade_cloud_batch_size_sum", 'model="digits-batched"') >= 6


CLIENT_SCRIPT = """
import json, sys
sys.path.insert(0, sys.argv[1])
import grpc
import grpc_predict_v2_pb2 as pb, grpc_predict_v2_pb2_grpc as pb_grpc
stub = pb_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(sys.argv[2]))
auth = (("authorization", "Bearer tok-store-1"),)
rows = json.loads(sys.argv[3])
req = pb.ModelInferRequest(model_name="digits-cloud", id="typed")
t = req.inputs.add(name="input", datatype="FP32", shape=[len(rows), 64])
t.contents.fp32_contents.extend(v for row in rows for v in row)
req.outputs.add(name="probabilities")
resp = stub.ModelInfer(req, metadata=auth, timeout=10)
out = {
    "live": stub.ServerLive(pb.ServerLiveRequest()).live,
    "ready": stub.ModelReady(pb.ModelReadyRequest(name="digits-cloud")).ready,
    "version": resp.model_version,
    "outputs": [(o.name, o.datatype, list(o.shape)) for o in resp.outputs],
    "raw": [r.hex() for r in resp.raw_output_contents],
}
try:
    stub.ModelInfer(req)
except grpc.RpcError as exc:
    out["no_token"] = exc.code().name
print(json.dumps(out))
"""


def test_client_compiled_from_the_proto_in_this_test(
    server: CloudServer, tmp_path: Path, digits_split, reference: np.ndarray
) -> None:
    from grpc_tools import protoc

    out = tmp_path / "gen"
    out.mkdir()
    args = ["protoc", f"-I{PROTO.parent}", f"--python_out={out}", f"--grpc_python_out={out}", str(PROTO)]
    assert protoc.main(args) == 0
    _, held = digits_split
    rows = held.features[:3].astype(np.float32).tolist()
    # Its own process: the freshly compiled messages live in protobuf's default pool there.
    done = subprocess.run(
        [sys.executable, "-c", CLIENT_SCRIPT, str(out), server.grpc_target, json.dumps(rows)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["live"] is True and result["ready"] is True and result["version"] == "1.0.0"
    assert result["outputs"] == [["probabilities", "FP32", [3, 10]]]
    probs = np.frombuffer(bytes.fromhex(result["raw"][0]), "<f4").reshape(3, 10)
    np.testing.assert_allclose(probs, reference[:3], rtol=1e-5, atol=1e-6)
    assert result["no_token"] == "UNAUTHENTICATED"


def test_the_proto_matches_tritonclients_for_every_shared_message() -> None:
    """Field numbers, names, types and labels of every message both protos define."""
    from tritonclient.grpc import service_pb2

    from edgecascade.shared.v2.grpc import grpc_predict_v2_pb2 as ours

    def fields(descriptor) -> dict[str, tuple[int, int, bool]]:  # type: ignore[no-untyped-def]
        return {f.name: (f.number, f.type, f.is_repeated) for f in descriptor.fields}

    names = list(ours.DESCRIPTOR.message_types_by_name)
    assert len(names) == 14  # 12 requests and responses, InferParameter, InferTensorContents
    theirs_by_name = service_pb2.DESCRIPTOR.message_types_by_name
    for name in names:
        mine = ours.DESCRIPTOR.message_types_by_name[name]
        theirs = theirs_by_name[name]
        assert fields(mine) == {k: v for k, v in fields(theirs).items() if k in fields(mine)}, name
        for nested in mine.nested_types:
            other = theirs.nested_types_by_name[nested.name]
            assert fields(nested) == {k: v for k, v in fields(other).items() if k in fields(nested)}, (
                nested.name
            )
    service = ours.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    triton_service = service_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    for method in service.methods:
        assert triton_service.methods_by_name[method.name].input_type.full_name == method.input_type.full_name


def test_checked_in_modules_are_what_protoc_generates() -> None:
    from edgecascade.tools.grpc_codegen import main

    assert main(["--check"]) == 0


def test_grpc_versions_and_repository_models(tmp_path: Path, models_dir: Path) -> None:
    """A model added to a repository is served over gRPC too, under its own batching settings."""
    repo = tmp_path / "repo"
    add_version(repo, "solo", "3", models_dir / "digits_cloud.onnx", ModelSettings(max_batch_size=1))
    srv = CloudServer(repo, grpc=True).start()  # --no-auth
    client = triton.InferenceServerClient(srv.grpc_target)
    try:
        assert client.get_model_metadata("solo", as_json=True)["versions"] == ["3"]
        result = client.infer("solo", [_input(np.zeros((1, 64), np.float32))])
        assert result.get_response().model_version == "3"
        with pytest.raises(InferenceServerException) as info:
            client.is_model_ready("solo", "4")
        assert info.value.status() == "StatusCode.NOT_FOUND"
    finally:
        client.close()
        srv.stop()


def test_malformed_requests_are_invalid_argument_never_internal(server: CloudServer) -> None:
    """Requests tritonclient would never build, sent through our own stub."""
    import grpc

    from edgecascade.shared.v2.grpc import grpc_predict_v2_pb2 as pb
    from edgecascade.shared.v2.grpc import grpc_predict_v2_pb2_grpc as pb_grpc

    def request(**tensor: object) -> pb.ModelInferRequest:
        req = pb.ModelInferRequest(model_name="digits-cloud")
        req.inputs.add(name="input", **tensor)  # type: ignore[arg-type]
        return req

    cases = {
        "65 dimensions": request(datatype="FP32", shape=[1] * 65),
        "negative dimension": request(datatype="FP32", shape=[-1, 64]),
        "unknown datatype": request(datatype="FP33", shape=[1, 64]),
        "too few values": request(
            datatype="FP32", shape=[1, 64], contents=pb.InferTensorContents(fp32_contents=[1.0])
        ),
        "values in the wrong field": request(
            datatype="FP32", shape=[1, 1], contents=pb.InferTensorContents(int_contents=[1])
        ),
        "huge shape, no data": request(datatype="FP32", shape=[1, 9223372036854775807]),
    }
    raw_mismatch = request(datatype="FP32", shape=[1, 64])
    raw_mismatch.raw_input_contents.append(b"\0" * 12)
    cases["raw bytes of the wrong size"] = raw_mismatch
    two_raws = request(datatype="FP32", shape=[1, 64])
    two_raws.raw_input_contents.extend([b"\0" * 256, b"\0" * 256])
    cases["two raw tensors for one input"] = two_raws
    with grpc.insecure_channel(server.grpc_target) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        codes = {}
        for what, req in cases.items():
            try:
                stub.ModelInfer(req, metadata=tuple(AUTH.items()), timeout=10)
                codes[what] = "OK"
            except grpc.RpcError as exc:
                codes[what] = exc.code().name
    # Past the element limit is what REST answers 413: RESOURCE_EXHAUSTED; the rest are 400s.
    assert codes == {
        what: "RESOURCE_EXHAUSTED" if what == "huge shape, no data" else "INVALID_ARGUMENT" for what in cases
    }
    assert "Traceback" not in server.log_tail(20000)


def test_zero_size_shapes_are_invalid_argument_as_over_rest(server: CloudServer) -> None:
    """A zero dimension next to a huge one once made numpy raise inside the decoder: INTERNAL and
    a traceback. REST refuses every zero-size shape (400); gRPC now does too, by the same check."""
    import grpc

    from edgecascade.shared.v2.grpc import grpc_predict_v2_pb2 as pb
    from edgecascade.shared.v2.grpc import grpc_predict_v2_pb2_grpc as pb_grpc

    def request(shape: list[int], raw: bool) -> pb.ModelInferRequest:
        req = pb.ModelInferRequest(model_name="digits-cloud")
        req.inputs.add(name="input", datatype="FP32", shape=shape)
        if raw:
            req.raw_input_contents.append(b"")
        return req

    cases = {
        f"{shape} {'raw' if raw else 'contents'}": request(shape, raw)
        for shape in ([0, 2**62], [0, 2**63 - 1], [2**40, 0], [0, 64])
        for raw in (True, False)
    }
    answers = {}
    with grpc.insecure_channel(server.grpc_target) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        for what, req in cases.items():
            try:
                stub.ModelInfer(req, metadata=tuple(AUTH.items()), timeout=10)
                answers[what] = "OK"
            except grpc.RpcError as exc:
                answers[what] = f"{exc.code().name}: {exc.details()}"
    # The same check and words as REST (shared/v2/limits.py).
    assert answers == {
        what: f"INVALID_ARGUMENT: inputs[0].shape: shape {what.rsplit(' ', 1)[0]} has no elements"
        for what in cases
    }
    log = server.log_tail(200_000)
    assert "Traceback" not in log and "answering gRPC INTERNAL" not in log


def test_a_grpc_port_in_use_stops_start_up_naming_the_setting(cloud_repo: Path, server: CloudServer) -> None:
    taken = server.grpc_port
    cmd = [
        sys.executable,
        "-m",
        "edgecascade",
        "cloud",
        "serve",
        "--repository",
        str(cloud_repo),
        "--no-auth",
    ]
    cmd += ["--port", "0", "--grpc-port", str(taken)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert f"grpc_port: cannot listen on 127.0.0.1:{taken} (in use?)" in done.stderr, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
