"""A real device process for crash tests: the wiring of tests.edge.deferred.support.Device.
Sends the given held-out rows (as request ids `h<row>`), prints `QUEUED <depth>` once they
are committed, then serves until SIGTERM (prints `DONE <counters>`) or SIGKILL.

With `--kill-after-answers K` the late-verdict worker's cloud client SIGKILLs this process
right after the K-th cloud answer arrives, before the verdict is stored: the crash window
between "the cloud computed it" and "the queue forgot it".

    python -m tests.edge.deferred.deferred_agent --config d.toml --rows 3,7,9
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading

import numpy as np

from edgecascade.edge.cloud_client import CloudAnswer, CloudClient


class KillAfterAnswers(CloudClient):
    """Delegates to the real client; dies by SIGKILL once `limit` answers have come back."""

    def __init__(self, inner: CloudClient, limit: int) -> None:
        self.inner = inner
        self.limit = limit
        self.answers = 0

    def infer(self, features: np.ndarray, *, request_id: str, raw_input: bytes | None = None) -> CloudAnswer:
        answer = self.inner.infer(features, request_id=request_id, raw_input=raw_input)
        self.answers += 1
        if self.answers >= self.limit:
            print(f"KILLING after {request_id}", flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
        return answer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", required=True)
    parser.add_argument("--rows", default="", help="comma-separated held-out rows to predict")
    parser.add_argument("--kill-after-answers", type=int, default=0)
    args = parser.parse_args(argv)

    from edgecascade.tools.datasets import load_split
    from tests.edge.deferred.support import Device

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    worker_cloud = None
    if args.kill_after_answers:
        from edgecascade.edge.agent import build_cloud_client
        from edgecascade.edge.config import load_profile

        worker_cloud = KillAfterAnswers(
            build_cloud_client(load_profile(args.config)), args.kill_after_answers
        )
    device = Device(args.config, worker_cloud=worker_cloud).start()
    features = load_split()[1].features
    for row in [int(r) for r in args.rows.split(",") if r]:
        device.agent.predict(features[row], request_id=f"h{row}")
    assert device.deferred.recorder is not None
    device.deferred.recorder.flush()
    print(f"QUEUED {device.deferred.counters()['queued']}", flush=True)
    stop.wait()
    counters = device.deferred.counters()
    device.stop()
    print(f"DONE {json.dumps(counters)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
