"""Cloud API throughput with 32 concurrent clients: our server unbatched vs batched, and Seldon
MLServer 1.7.1 (own venv, a small onnxruntime runtime) on the same models and JSON requests.

    python -m edgecascade.tools.bench.cloud_throughput [--seconds 4] [--clients 32] [--hidden 4096]

Models: the demo `digits-cloud` (tiny: per-request overhead dominates) and `digits-wide`
(tools/bench/wide_model.py: compute dominates, so batching pays). Each configuration is a model
folder with its own batching settings, served by one server process of each kind."""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import requests

from edgecascade.cloud.repository import ModelSettings, add_version
from edgecascade.tools.mqtt_broker import free_port

ROOT = Path(__file__).resolve().parents[2]
MLSERVER_VENV = ROOT / ".venv-mlserver"
RUNTIME_DIR = Path(__file__).parent / "mlserver_runtime"
BATCH, DELAY_MS = 32, 2.0


def _client(url: str, body: bytes, seconds: float, threads: int, out: mp.Queue) -> None:
    latencies: list[float] = []
    errors = [0]
    stop_at = time.perf_counter() + seconds

    def worker() -> None:
        session = requests.Session()
        while time.perf_counter() < stop_at:
            start = time.perf_counter()
            resp = session.post(url, data=body, headers={"Content-Type": "application/json"}, timeout=30)
            if resp.status_code == 200:
                latencies.append(time.perf_counter() - start)
            else:
                errors[0] += 1

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    out.put((latencies, errors[0]))


def load(url: str, body: bytes, seconds: float, clients: int, procs: int = 2) -> dict[str, float]:
    """`clients` concurrent keep-alive clients (threads over `procs` processes, past the GIL)."""
    _client_run(url, body, 1.0, clients, procs)  # warm-up
    return _client_run(url, body, seconds, clients, procs)


def _client_run(url: str, body: bytes, seconds: float, clients: int, procs: int) -> dict[str, float]:
    ctx = mp.get_context("fork")
    out: mp.Queue = ctx.Queue()
    workers = [
        ctx.Process(target=_client, args=(url, body, seconds, clients // procs, out)) for _ in range(procs)
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
        "p50_ms": float(np.percentile(lat, 50)),
        "p99_ms": float(np.percentile(lat, 99)),
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


def mlserver_repository(work: Path, models: dict[str, Path], http_port: int) -> Path:
    repo = work / "mlserver"
    repo.mkdir()
    settings = {"http_port": http_port, "grpc_port": free_port(), "metrics_port": free_port(), "debug": False}
    (repo / "settings.json").write_text(json.dumps(settings))
    for name, path in models.items():
        for suffix, batching in (
            ("unbatched", {}),
            ("batched", {"max_batch_size": BATCH, "max_batch_time": DELAY_MS / 1000}),
        ):
            folder = repo / f"{name}-{suffix}"
            folder.mkdir()
            doc = {
                "name": folder.name,
                "implementation": "onnx_runtime.OnnxModel",
                "parameters": {"uri": str(path)},
                **batching,
            }
            (folder / "model-settings.json").write_text(json.dumps(doc))
    return repo


def ensure_mlserver() -> Path | None:
    """MLServer's own venv (it pins fastapi<0.116 and protobuf<7); None with the reason printed.

    uvloop is held below 0.22: with 0.22+ MLServer 1.7.1's inference-pool workers die at start
    ("There is no current event loop in thread 'MainThread'", from asyncio.get_event_loop)."""
    exe = MLSERVER_VENV / "bin" / "mlserver"
    try:
        if not exe.exists():
            print(f"installing MLServer 1.7.1 into {MLSERVER_VENV} ...")
            subprocess.run([sys.executable, "-m", "venv", str(MLSERVER_VENV)], check=True)
        pins = ["mlserver==1.7.1", "onnxruntime", "numpy<2.3", "uvloop<0.22"]
        subprocess.run([str(MLSERVER_VENV / "bin" / "pip"), "install", "-q", *pins], check=True, timeout=900)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        print(f"MLServer could not be installed: {exc}")
        return None
    return exe


def body_for(rows: np.ndarray) -> bytes:
    from edgecascade.shared.v2 import encode_infer_request

    body, _ = encode_infer_request({"input": rows}, binary=False, binary_outputs=False)
    return body


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=4.0, help="measured seconds per configuration")
    parser.add_argument("--clients", type=int, default=32, help="concurrent clients")
    parser.add_argument("--hidden", type=int, default=4096, help="width of digits-wide")
    parser.add_argument("--skip-mlserver", action="store_true", help="measure our server only")
    args = parser.parse_args(argv)

    from edgecascade.tools.datasets import load_split

    body = body_for(load_split()[1].features[:1])
    results: dict[tuple[str, str], dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-cloud-") as tmp:
        work = Path(tmp)
        models = build_models(work, args.hidden)
        servers: list[tuple[str, list[str], dict[str, str], str]] = []
        port = free_port()
        ours = [sys.executable, "-m", "edgecascade", "--log-level", "WARNING", "cloud", "serve"]
        ours += ["--repository", str(our_repository(work, models)), "--port", str(port), "--no-auth"]
        servers.append(("edgecascade", ours, {}, f"http://127.0.0.1:{port}"))
        exe = None if args.skip_mlserver else ensure_mlserver()
        if exe is not None:
            mport = free_port()
            env = {"PYTHONPATH": str(RUNTIME_DIR)}
            servers.append(
                (
                    "mlserver-1.7.1",
                    [str(exe), "start", str(mlserver_repository(work, models, mport))],
                    env,
                    f"http://127.0.0.1:{mport}",
                )
            )
        for server_name, cmd, extra_env, url in servers:
            log_file = open(work / f"{server_name}.log", "wb")
            proc = subprocess.Popen(
                cmd, cwd=ROOT, env={**os.environ, **extra_env}, stdout=log_file, stderr=log_file
            )
            try:
                try:
                    wait_ready(url, proc)
                except (RuntimeError, TimeoutError):
                    print((work / f"{server_name}.log").read_text()[-3000:])
                    raise
                for model in models:
                    for mode in ("unbatched", "batched"):
                        r = load(f"{url}/v2/models/{model}-{mode}/infer", body, args.seconds, args.clients)
                        results[(server_name, f"{model}-{mode}")] = r
                        print(
                            f"{server_name:15s} {model + '-' + mode:24s} {r['rps']:8.1f} req/s   "
                            f"p50 {r['p50_ms']:7.2f} ms   p99 {r['p99_ms']:7.2f} ms   errors {int(r['errors'])}",
                            flush=True,
                        )
            finally:
                proc.terminate()
                proc.wait(30)
                log_file.close()
            if proc.returncode not in (0, -15):
                print((work / f"{server_name}.log").read_text()[-3000:])
    print("\nratios (requests/s):")
    for model in models:
        base = results[("edgecascade", f"{model}-unbatched")]["rps"]
        print(
            f"  {model}: edgecascade batched / unbatched = {results[('edgecascade', f'{model}-batched')]['rps'] / base:.2f}x"
        )
        for mode in ("unbatched", "batched"):
            theirs = results.get(("mlserver-1.7.1", f"{model}-{mode}"))
            if theirs:
                mine = results[("edgecascade", f"{model}-{mode}")]["rps"]
                print(f"  {model}-{mode}: edgecascade / mlserver = {mine / theirs['rps']:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
