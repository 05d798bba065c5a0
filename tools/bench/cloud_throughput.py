"""Cloud API throughput with 32 concurrent clients, over REST and over gRPC: our server and Seldon
MLServer 1.7.1 (own venv, tools/bench/mlserver.py, a small onnxruntime runtime) on the same models
and the same one-row requests, unbatched and batched.

    python -m edgecascade.tools.bench.cloud_throughput [--seconds 3] [--rounds 3] [--clients 32]

Models: the demo `digits-cloud` (tiny: per-request overhead dominates) and `digits-wide`
(tools/bench/wide_model.py: compute dominates, so batching pays). Both servers run side by side
for the whole benchmark; each round measures every (model, mode, server, protocol) once, one at
a time, in an order that rotates per round, so a load change on the machine hits both servers
alike. Figures are medians over rounds; ratios are of those medians."""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import requests

from edgecascade.cloud.repository import ModelSettings, add_version
from edgecascade.tools.bench.mlserver import MlServerProcess, install
from edgecascade.tools.mqtt_broker import free_port

ROOT = Path(__file__).resolve().parents[2]
BATCH, DELAY_MS = 32, 2.0
MODES = ("unbatched", "batched")
INFER_METHOD = "/inference.GRPCInferenceService/ModelInfer"


def _rest_worker(url: str, body: bytes, stop_at: float, latencies: list[float], errors: list[int]) -> None:
    session = requests.Session()
    while time.perf_counter() < stop_at:
        start = time.perf_counter()
        resp = session.post(url, data=body, headers={"Content-Type": "application/json"}, timeout=30)
        if resp.status_code == 200:
            latencies.append(time.perf_counter() - start)
        else:
            errors[0] += 1


def _grpc_worker(target: str, body: bytes, stop_at: float, latencies: list[float], errors: list[int]) -> None:
    import grpc

    # A pre-serialized ModelInferRequest: the client spends its time on the wire, not in protobuf.
    with grpc.insecure_channel(target) as channel:
        call = channel.unary_unary(INFER_METHOD)
        while time.perf_counter() < stop_at:
            start = time.perf_counter()
            try:
                call(body, timeout=30)
            except grpc.RpcError:
                errors[0] += 1
                continue
            latencies.append(time.perf_counter() - start)


def _client(kind: str, where: str, body: bytes, seconds: float, threads: int, out: mp.Queue) -> None:
    worker: Callable[..., None] = _rest_worker if kind == "rest" else _grpc_worker
    latencies: list[float] = []
    errors = [0]
    stop_at = time.perf_counter() + seconds
    pool = [
        threading.Thread(target=worker, args=(where, body, stop_at, latencies, errors))
        for _ in range(threads)
    ]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    out.put((latencies, errors[0]))


def load(
    kind: str, where: str, body: bytes, seconds: float, clients: int, procs: int = 2
) -> dict[str, float]:
    """`clients` concurrent keep-alive clients (threads over `procs` processes, past the GIL)."""
    ctx = mp.get_context("fork")
    out: mp.Queue = ctx.Queue()
    workers = [
        ctx.Process(target=_client, args=(kind, where, body, seconds, clients // procs, out))
        for _ in range(procs)
    ]
    start = time.perf_counter()
    for w in workers:
        w.start()
    results = [out.get() for _ in workers]
    elapsed = time.perf_counter() - start
    for w in workers:
        w.join()
    lat = np.array([x for r in results for x in r[0]]) * 1000.0
    return {
        "rps": len(lat) / elapsed,
        "p50_ms": float(np.percentile(lat, 50)) if lat.size else float("nan"),
        "p99_ms": float(np.percentile(lat, 99)) if lat.size else float("nan"),
        "errors": float(sum(r[1] for r in results)),
    }


def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout_s: float = 90.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}; see its log")
        try:
            if requests.get(url + "/v2/health/ready", timeout=5).status_code == 200:
                return
        except (requests.ConnectionError, requests.Timeout):  # still starting
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url} not ready after {timeout_s}s")


def build_models(work: Path, hidden: int) -> dict[str, Path]:
    from edgecascade.tools.bench.wide_model import build_wide_model

    wide = work / "digits_wide.onnx"
    accuracy = build_wide_model(wide, hidden=hidden)
    print(f"digits-wide (64 -> {hidden} -> {hidden} -> 10): held-out accuracy {accuracy:.4f}")
    return {"digits-cloud": ROOT / "tests/fixtures/models/digits_cloud.onnx", "digits-wide": wide}


def our_repository(work: Path, models: dict[str, Path]) -> Path:
    repo = work / "ours"
    for name, path in models.items():
        add_version(
            repo, f"{name}-unbatched", "1", path, ModelSettings(max_batch_size=1, max_queue_size=4096)
        )
        add_version(
            repo,
            f"{name}-batched",
            "1",
            path,
            ModelSettings(max_batch_size=BATCH, max_queue_delay_ms=DELAY_MS, max_queue_size=4096),
        )
    return repo


def mlserver_models(models: dict[str, Path]) -> dict[str, tuple[Path, dict[str, object]]]:
    out: dict[str, tuple[Path, dict[str, object]]] = {}
    for name, path in models.items():
        out[f"{name}-unbatched"] = (path, {})
        out[f"{name}-batched"] = (path, {"max_batch_size": BATCH, "max_batch_time": DELAY_MS / 1000})
    return out


def bodies(rows: np.ndarray, model: str) -> dict[str, bytes]:
    """The same one-row request as a V2 JSON body and as a serialized ModelInferRequest."""
    from edgecascade.shared.v2 import encode_infer_request
    from edgecascade.shared.v2.grpc.convert import request_to_proto

    rest, _ = encode_infer_request({"input": rows}, binary=False, binary_outputs=False)
    grpc_body = request_to_proto(model, None, {"input": rows}).SerializeToString()
    return {"rest": rest, "grpc": grpc_body}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--seconds", type=float, default=3.0, help="measured seconds per configuration and round"
    )
    parser.add_argument("--rounds", type=int, default=3, help="rounds; figures are medians over them")
    parser.add_argument("--clients", type=int, default=32, help="concurrent clients")
    parser.add_argument("--hidden", type=int, default=4096, help="width of digits-wide")
    parser.add_argument("--skip-mlserver", action="store_true", help="measure our server only")
    args = parser.parse_args(argv)

    from edgecascade.tools.datasets import load_split

    rows = load_split()[1].features[:1].astype(np.float32)
    with tempfile.TemporaryDirectory(prefix="bench-cloud-") as tmp:
        work = Path(tmp)
        models = build_models(work, args.hidden)
        port, grpc_port = free_port(), free_port()
        cmd = [sys.executable, "-m", "edgecascade", "--log-level", "WARNING", "cloud", "serve"]
        cmd += ["--repository", str(our_repository(work, models)), "--port", str(port), "--no-auth"]
        cmd += ["--grpc-port", str(grpc_port)]
        log_file = open(work / "edgecascade.log", "wb")
        ours = subprocess.Popen(cmd, cwd=ROOT, stdout=log_file, stderr=log_file)
        servers: Servers = {"edgecascade": (f"http://127.0.0.1:{port}", f"127.0.0.1:{grpc_port}")}
        theirs: MlServerProcess | None = None
        try:
            wait_ready(servers["edgecascade"][0], ours)
            if not args.skip_mlserver:
                theirs = MlServerProcess(install(), mlserver_models(models), work).start()
                servers["mlserver-1.7.1"] = (theirs.url, theirs.grpc_target)
            rounds = measure(servers, list(models), rows, args.rounds, args.seconds, args.clients)
        finally:
            if theirs is not None:
                theirs.stop()
            ours.terminate()
            ours.wait(30)
            log_file.close()
    print(f"\nmedians over {args.rounds} rounds of {args.seconds:.0f} s, {args.clients} clients:")
    print_medians(rounds)
    print_ratios(rounds, list(models), list(servers))
    return 0


#: server -> (REST base URL, gRPC target)
Servers = dict[str, tuple[str, str]]
#: (model-mode, server, protocol) -> one result per round
Rounds = dict[tuple[str, str, str], list[dict[str, float]]]


def measure(
    servers: Servers, models: list[str], rows: np.ndarray, rounds: int, seconds: float, clients: int
) -> Rounds:
    """Every (model, mode, server, protocol) once a round, in an order that rotates per round."""
    configs = [
        (f"{model}-{mode}", server, proto)
        for model in models
        for mode in MODES
        for server in servers
        for proto in ("rest", "grpc")
    ]

    def where(model_mode: str, server: str, proto: str) -> str:
        base, target = servers[server]
        return f"{base}/v2/models/{model_mode}/infer" if proto == "rest" else target

    for model_mode, server, proto in configs:  # warm-up: first requests load caches, pools
        load(proto, where(model_mode, server, proto), bodies(rows, model_mode)[proto], 0.5, clients)
    results: Rounds = {}
    for r in range(rounds):
        shift = r % len(configs)
        for model_mode, server, proto in configs[shift:] + configs[:shift]:
            result = load(
                proto, where(model_mode, server, proto), bodies(rows, model_mode)[proto], seconds, clients
            )
            results.setdefault((model_mode, server, proto), []).append(result)
            print(
                f"round {r + 1}: {server:15s} {proto:4s} {model_mode:22s} {result['rps']:8.1f} req/s   "
                f"p50 {result['p50_ms']:7.2f} ms   p99 {result['p99_ms']:7.2f} ms   errors {int(result['errors'])}",
                flush=True,
            )
    return results


def _median(rounds: Rounds, key: tuple[str, str, str], field: str = "rps") -> float:
    return statistics.median(x[field] for x in rounds[key])


def print_medians(rounds: Rounds) -> None:
    print(f"{'model':24s} {'server':15s} {'proto':5s} {'req/s':>8s} {'p50 ms':>8s} {'p99 ms':>8s}")
    for key in sorted(rounds):
        print(
            f"{key[0]:24s} {key[1]:15s} {key[2]:5s} {_median(rounds, key):8.1f} "
            f"{_median(rounds, key, 'p50_ms'):8.2f} {_median(rounds, key, 'p99_ms'):8.2f}"
        )


def print_ratios(rounds: Rounds, models: list[str], servers: list[str]) -> None:
    def med(key: tuple[str, str, str]) -> float:
        return _median(rounds, key)

    print("\nratios of medians (requests/s):")
    for model in models:
        for mode in MODES:
            mm = f"{model}-{mode}"
            for proto in ("rest", "grpc"):
                if (mm, "mlserver-1.7.1", proto) in rounds:
                    ratio = med((mm, "edgecascade", proto)) / med((mm, "mlserver-1.7.1", proto))
                    print(f"  {mm:24s} {proto:4s}: edgecascade / mlserver = {ratio:.2f}x")
            for server in servers:
                ratio = med((mm, server, "grpc")) / med((mm, server, "rest"))
                print(f"  {mm:24s} {server}: gRPC / REST = {ratio:.2f}x")
        ratio = med((f"{model}-batched", "edgecascade", "rest")) / med(
            (f"{model}-unbatched", "edgecascade", "rest")
        )
        print(f"  {model}: edgecascade batched / unbatched (REST) = {ratio:.2f}x")


if __name__ == "__main__":
    raise SystemExit(main())
