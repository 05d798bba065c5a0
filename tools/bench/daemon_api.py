"""The daemon's local HTTP API against the in-process call, on the same model and inputs.

    python -m tools.bench.daemon_api [--requests 3000]

Measures, in one run: the in-process Agent.predict(); the same request through the running
daemon's V2 HTTP API on loopback (one keep-alive connection, binary tensors), and the
overhead; requests/s the daemon sustains with 8 concurrent clients; the daemon's idle and
loaded RSS (VmRSS, VmHWM from /proc)."""

from __future__ import annotations

import argparse
import http.client
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import requests

from shared.v2 import encode_infer_request
from tools.bench.stats import summary, time_calls

REPO = Path(__file__).resolve().parents[2]
MODEL = REPO / "tests" / "fixtures" / "models" / "digits_edge_int8.tflite"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _status(pid: int) -> dict[str, float]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("VmRSS", "VmHWM")):
            out[line.split(":")[0]] = int(line.split()[1]) / 1024
    return out


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=3000)
    args = parser.parse_args()
    from edge.agent import Agent
    from edge.config import load_profile
    from tools.datasets import load_split

    _, held = load_split()
    row = held.features[0]
    with tempfile.TemporaryDirectory() as tmp:
        port = _free_port()
        profile = Path(tmp) / "bench.toml"
        profile.write_text(
            f'profile = "bench"\ndata_dir = "{tmp}/data"\nmemory_budget_mb = 150\n[model]\npath = "{MODEL}"\n'
            '[cascade]\npolicies = [{ kind = "max_prob", threshold = 0.0 }]\n'
            f"[api]\nport = {port}\nmax_inflight = 64\nworkers = 2\n"
        )
        agent = Agent.from_profile(load_profile(profile, environ={}))
        inproc = time_calls(lambda: agent.predict(row), args.requests)
        agent.close()
        daemon = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "edgecascade",
                "--log-level",
                "WARNING",
                "agent",
                "run",
                "-c",
                str(profile),
            ],
            cwd=REPO,
        )
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    if requests.get(url + "/v2/health/ready", timeout=0.5).status_code == 200:
                        break
                except requests.ConnectionError:
                    time.sleep(0.1)
            time.sleep(1.0)
            idle = _status(daemon.pid)
            body, headers = encode_infer_request({"input": row[None, :]}, request_id="bench")
            infer_url = url + "/v2/models/digits-edge/infer"
            path = "/v2/models/digits-edge/infer"
            # The stdlib client on one keep-alive connection: what the API costs, not what a
            # heavy client library adds on top.
            conn = http.client.HTTPConnection("127.0.0.1", port)

            def call() -> object:
                conn.request("POST", path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                assert resp.status == 200, data
                return data

            via_http = time_calls(call, args.requests, warmup=100)

            def health() -> object:
                conn.request("GET", "/v2/health/live")
                return conn.getresponse().read()

            floor = time_calls(health, args.requests, warmup=100)
            print(f"in-process Agent.predict   {summary(inproc)}")
            print(f"local HTTP API (loopback)  {summary(via_http)}")
            print(f"GET /v2/health/live        {summary(floor)}   (the HTTP server's own floor)")
            print(
                f"HTTP overhead over in-process: {np.median(via_http) - np.median(inproc):.0f} µs at the median "
                f"(target <= 300)   ratio {np.median(via_http) / np.median(inproc):.1f}x"
            )

            def worker(n: int) -> int:
                s = requests.Session()
                ok = 0
                for _ in range(n):
                    ok += s.post(infer_url, data=body, headers=headers).status_code == 200
                return ok

            started = time.perf_counter()
            with ThreadPoolExecutor(8) as pool:
                ok = sum(pool.map(worker, [args.requests // 8] * 8))
            elapsed = time.perf_counter() - started
            loaded = _status(daemon.pid)
            print(
                f"throughput, 8 concurrent clients: {ok / elapsed:.0f} requests/s ({ok} answered in {elapsed:.1f}s)"
            )
            print(
                f"daemon RSS idle {idle['VmRSS']:.1f} MiB, after load {loaded['VmRSS']:.1f} MiB, peak {loaded['VmHWM']:.1f} MiB"
            )
        finally:
            daemon.terminate()
            daemon.wait(20)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
