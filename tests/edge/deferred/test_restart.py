"""Queued cases survive SIGKILL of the device process, and a kill between the cloud's answer
and the queue's commit neither loses the case nor makes the cloud compute it twice: real
agent subprocesses, the real cloud API, real Mosquitto and a real subscriber."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from edgecascade.cloud.repository import seed_demo_repository
from edgecascade.shared.mqtt import Topics
from edgecascade.tools.mqtt_broker import BrokerProcess
from tests.conftest import MODELS, REPO
from tests.edge.deferred.support import (
    FLEET,
    SwitchableCloud,
    VerdictSubscriber,
    hard_rows,
    wait_for,
    write_profile,
)


def _spawn(profile: Path, *args: str) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-m", "tests.edge.deferred.deferred_agent", "--config", str(profile), *args]
    return subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _read_line(proc: subprocess.Popen[str], prefix: str, timeout_s: float = 30.0) -> str:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.startswith(prefix):
            return line[len(prefix) :].strip()
        if not line and proc.poll() is not None:
            break
    err = proc.stderr.read() if proc.stderr else ""
    raise AssertionError(f"no {prefix!r} line from the agent (exit {proc.poll()}):\n{err[-3000:]}")


def test_exactly_one_verdict_per_case_across_sigkill_and_a_crash_after_the_cloud_answered(
    tmp_path: Path, broker: BrokerProcess, digits_split
) -> None:
    rows = hard_rows(digits_split[1].features, 6)
    cloud = SwitchableCloud(seed_demo_repository(tmp_path / "models", MODELS), tmp_path / "cloud.log")
    profile = write_profile(tmp_path / "k.toml", device="k1", cloud_url=cloud.url, mqtt_port=broker.port)
    subscriber = VerdictSubscriber(broker.port, Topics(FLEET).verdicts("k1"))
    procs: list[subprocess.Popen[str]] = []
    try:
        # 1. Cloud down: every hard case is answered degraded and queued; then kill -9.
        first = _spawn(profile, "--rows", ",".join(map(str, rows)))
        procs.append(first)
        assert _read_line(first, "QUEUED ") == str(len(rows))
        first.send_signal(signal.SIGKILL)
        first.wait(10)

        # 2. Cloud back; this agent dies right after the first cloud answer, before its commit.
        cloud.up()
        second = _spawn(profile, "--kill-after-answers", "1")
        procs.append(second)
        killed_after = _read_line(second, "KILLING after ")
        assert second.wait(20) == -signal.SIGKILL
        assert killed_after == f"h{rows[0]}"  # oldest first
        assert cloud.counter("edgecascade_cloud_inferences") == 1
        time.sleep(0.2)
        assert subscriber.counts() == {}  # no verdict came out of the crashed run

        # 3. A clean restart drains the queue: the killed case is re-sent and replayed by the cloud.
        third = _spawn(profile)
        procs.append(third)
        assert _read_line(third, "QUEUED ") in {str(n) for n in range(len(rows) + 1)}
        wait_for(lambda: len(subscriber.counts()) == len(rows), timeout_s=20, what="all verdicts")
        time.sleep(0.5)  # room for a duplicate to arrive, were there one
        third.send_signal(signal.SIGTERM)
        counters = json.loads(_read_line(third, "DONE "))
        assert third.wait(10) == 0
        assert subscriber.counts() == {f"h{r}": 1 for r in rows}
        assert counters == {
            "queued": 0,
            "sent": len(rows),
            "verdicts": len(rows),
            "pending_publish": 0,
            "dropped": 0,
        }
        assert cloud.counter("edgecascade_cloud_inferences") == len(rows)  # each computed once
        assert cloud.counter("edgecascade_cloud_idempotent_replays") == 1
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)
            for pipe in (proc.stdout, proc.stderr):
                if pipe is not None:
                    pipe.close()
        subscriber.close()
        cloud.close()
