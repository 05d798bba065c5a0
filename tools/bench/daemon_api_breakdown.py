"""Where the local HTTP API's time goes, next to `daemon_api`'s totals.

    python -m edgecascade.tools.bench.daemon_api_breakdown [--requests 3000] [--rounds 5]

Measures, in one run: the floor of the HTTP server itself (the agent's own server, and uvicorn
for comparison where it is installed: an ASGI app that answers the same request with fixed
bytes, in its own process, with the same raw client as `daemon_api`); and, in process, each step of the agent's V2 answer
(`edge.daemon.v2_service.AgentV2.answer`) for the same request: decode, checks, translation,
the cascade's local phase, outputs, provenance, encode. Medians of per-call timings."""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edgecascade.shared.v2 import encode_infer_request
from edgecascade.tools.bench.daemon_api import INFER_PATH, RawHttpClient, _free_port, _write_profile
from edgecascade.tools.bench.stats import time_calls

if TYPE_CHECKING:
    from edgecascade.edge.agent import Agent
    from edgecascade.edge.daemon.v2_service import AgentV2

_FLOOR_APP = """
import sys, time
BODY = b"x" * int(sys.argv[3])
HEAD = [(b"content-type", b"application/octet-stream"), (b"content-length", str(len(BODY)).encode())]
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200, "headers": HEAD})
    await send({"type": "http.response.body", "body": BODY})
port = int(sys.argv[2])
if sys.argv[1] == "uvicorn":
    import uvicorn
    uvicorn.run(app, host="127.0.0.1", port=port, lifespan="off", access_log=False,
                proxy_headers=False, server_header=False, log_level="warning")
else:
    from edgecascade.edge.daemon.http_server import HttpServer
    HttpServer(app, "127.0.0.1", port).start()
    time.sleep(3600)
"""
#: The agent's own server, and uvicorn (the cloud's; the agent's until issue 13) for comparison.
FLOOR_SERVERS = ["agent", "uvicorn"]

STEPS = ["decode", "checks", "translate", "local phase", "outputs", "provenance", "encode"]


@dataclass
class _InProcess:
    """Per-call timings in µs: Agent.predict, AgentV2.answer, and ns per answer step."""

    predict: list[np.ndarray] = field(default_factory=list)
    whole: list[float] = field(default_factory=list)
    parts: list[list[int]] = field(default_factory=list)
    reply_size: int = 0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=3000, help="calls per measurement (default 3000)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds they are split into")
    args = parser.parse_args()
    from edgecascade.tools.datasets import load_split

    row = load_split()[1].features[0]
    body, headers = encode_infer_request({"input": row[None, :]}, request_id="bench")
    per_round = max(1, args.requests // args.rounds)
    timed = _in_process(row, body, headers, args.rounds, per_round)
    floors = {
        name: _server_floor(name, body, headers, timed.reply_size, args.rounds, per_round)
        for name in FLOOR_SERVERS
        if name != "uvicorn" or importlib.util.find_spec("uvicorn") is not None
    }
    medians = np.median(np.array(timed.parts), axis=0) / 1000
    for name, floor in floors.items():
        label = f"HTTP server floor ({name} server, fixed answer, same request)"
        print(f"{label:58s} median {np.median(floor):8.1f} µs")
    if len(floors) == 2:
        ratio = np.median(floors["agent"]) / np.median(floors["uvicorn"])
        print(f"{'  agent server / uvicorn':58s} {ratio:8.2f}x")
    print(
        f"{'in-process Agent.predict, back to back':58s} median {np.median(np.concatenate(timed.predict)):8.1f} µs"
    )
    print(f"{'in-process AgentV2.answer (the API without HTTP)':58s} median {np.median(timed.whole):8.1f} µs")
    for name, value in zip(STEPS, medians, strict=True):
        print(f"  {name:56s} median {value:8.1f} µs")
    return 0


def _in_process(
    row: np.ndarray, body: bytes, headers: dict[str, str], rounds: int, per_round: int
) -> _InProcess:
    from edgecascade.edge.agent import Agent
    from edgecascade.edge.config import load_profile
    from edgecascade.edge.daemon.v2_service import AgentV2

    lower = {k.lower(): v for k, v in headers.items()}
    timed = _InProcess()
    with tempfile.TemporaryDirectory() as tmp:
        agent = Agent.from_profile(load_profile(_write_profile(Path(tmp), "x", "port = 0"), environ={}))
        v2 = AgentV2(agent, ThreadPoolExecutor(1))
        loop = asyncio.new_event_loop()
        timed.reply_size = len(loop.run_until_complete(v2.answer("digits-edge", None, body, lower)).body)

        async def answers(n: int) -> list[float]:
            out = []
            for _ in range(n):
                start = time.perf_counter_ns()
                await v2.answer("digits-edge", None, body, lower)
                out.append((time.perf_counter_ns() - start) / 1000)
            return out

        async def many_steps(n: int) -> list[list[int]]:
            return [await _steps(agent, v2, body, lower) for _ in range(n)]

        for _ in range(rounds):
            timed.predict.append(time_calls(lambda: agent.predict(row), per_round))
            timed.whole += loop.run_until_complete(answers(per_round))
            timed.parts += loop.run_until_complete(many_steps(per_round))
        agent.close()
    return timed


async def _steps(agent: Agent, v2: AgentV2, body: bytes, lower: dict[str, str]) -> list[int]:
    """Nanoseconds of each of STEPS for one request, done as AgentV2.answer does them."""
    from edgecascade.edge.daemon.translate import OUTPUTS, provenance, to_outputs
    from edgecascade.edge.serving import task_request
    from edgecascade.edge.tasks.classification import ClassificationTask
    from edgecascade.shared.v2 import decode_infer_request, encode_infer_response
    from edgecascade.shared.v2.answering import binary_outputs_for, check_output_names

    served = agent.get()
    task = served.task
    assert isinstance(task, ClassificationTask), "the demo model is a classifier"
    t = [time.perf_counter_ns()]
    request = decode_infer_request(body, lower, v2.limits)
    t.append(time.perf_counter_ns())
    card = agent.model.card
    wanted = check_output_names(request, list(OUTPUTS), card.name)
    t.append(time.perf_counter_ns())
    cascade_requests = task.cascade_requests(task_request(request, served))
    t.append(time.perf_counter_ns())
    answers = [task.cascade.local_phase(r) for r in cascade_requests]
    t.append(time.perf_counter_ns())
    outputs = to_outputs(answers, wanted)  # type: ignore[arg-type]
    t.append(time.perf_counter_ns())
    params = {"provenance": [provenance(a) for a in answers]}  # type: ignore[arg-type]
    t.append(time.perf_counter_ns())
    encode_infer_response(
        card.name,
        card.version,
        request.id,
        outputs,
        binary_outputs=binary_outputs_for(request),
        parameters=params,
    )
    t.append(time.perf_counter_ns())
    return [b - a for a, b in zip(t, t[1:], strict=False)]


def _server_floor(
    server_name: str, body: bytes, headers: dict[str, str], reply_size: int, rounds: int, per_round: int
) -> np.ndarray:
    """Round trips (µs) to an app on `server_name` that answers `reply_size` fixed bytes."""
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-c", _FLOOR_APP, server_name, str(port), str(reply_size)])
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                client = RawHttpClient(("127.0.0.1", port))
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit("the floor server did not start") from None
                time.sleep(0.1)
        request = RawHttpClient.encode("POST", INFER_PATH, body, headers)
        floor = np.concatenate(
            [time_calls(lambda: client.call(request), per_round, warmup=100) for _ in range(rounds)]
        )
        client.close()
    finally:
        server.terminate()
        server.wait(10)
    return floor


if __name__ == "__main__":
    raise SystemExit(main())
