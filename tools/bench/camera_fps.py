"""Camera-source throughput with the demo model: frames a second through source -> encode ->
cascade -> event, against the bare decode rate of the same file, in one run.

    python -m edgecascade.tools.bench.camera_fps [--repeat 4] [--rounds 5] [--scale 8] [--mqtt]

The video is the held-out digits (tools.make_video, FFV1, lossless) repeated `--repeat` times.
Bare: cv2.VideoCapture.read() of every frame. Pipeline: CameraSource sampling every frame
(fps = the file's rate, not real time) with the int8 TFLite demo model, offline cascade, events
to the in-memory sink (or, with --mqtt, QoS 0 to a real local Mosquitto). Rounds interleave so
machine noise hits both alike; the read-to-published latency of every frame is reported too."""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from edgecascade.edge.sources.events import Event, MemoryEventSink

REPO = Path(__file__).resolve().parents[2]
MODEL = REPO / "tests" / "fixtures" / "models" / "digits_edge_int8.tflite"


class LatencySink(MemoryEventSink):
    """Keeps the last events and the read-to-published latency of every one, in ms."""

    def __init__(self, inner: object | None = None) -> None:
        super().__init__(maxlen=16)
        self.inner = inner
        self.latency_ms: list[float] = []

    def publish(self, event: Event) -> None:
        if self.inner is not None:
            self.inner.publish(event)  # type: ignore[attr-defined]
        super().publish(event)
        self.latency_ms.append((time.time() - event.ts) * 1000.0)


def bare_decode_fps(video: Path) -> float:
    cap = cv2.VideoCapture(str(video))
    start, frames = time.perf_counter(), 0
    while True:
        ok, _ = cap.read()
        if not ok:
            break
        frames += 1
    elapsed = time.perf_counter() - start
    cap.release()
    return frames / elapsed


def pipeline_fps(agent: object, sink: LatencySink, expected: int) -> float:
    from edgecascade.edge.sources import CameraSource

    source = CameraSource.from_agent(agent, sink)  # type: ignore[arg-type]
    start = time.perf_counter()
    source.start()
    if not source.wait_finished(600):
        raise RuntimeError(f"camera source did not finish: {source.counters()}")
    elapsed = time.perf_counter() - start
    source.stop(1.0)
    counters = source.counters()
    if counters["frames_processed"] != expected or counters["frames_skipped"]:
        raise RuntimeError(f"expected {expected} answered frames, got {counters}")
    return expected / elapsed


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=4, help="held-out set repeats (540 frames each)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--scale", type=int, default=8, help="frame size = 8*scale pixels square")
    parser.add_argument("--mqtt", action="store_true", help="publish events to a local Mosquitto")
    args = parser.parse_args()

    from edgecascade.edge.agent import Agent
    from edgecascade.edge.config import load_profile

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        video, frames = _video(tmp, args.repeat, args.scale)
        profile = tmp / "bench.toml"
        profile.write_text(
            f'profile = "bench"\ndata_dir = "{tmp}"\nmemory_budget_mb = 120\n[model]\npath = "{MODEL}"\n'
            f'[cloud]\nurl = ""\n[camera]\nenabled = true\nsource = "{video}"\nfps = 30\n'
        )
        agent = Agent.from_profile(load_profile(profile, environ={}))
        bare, piped, latency = [], [], []
        with contextlib.ExitStack() as cleanup:
            cleanup.callback(agent.close)
            inner = cleanup.enter_context(_mqtt_sink(tmp)) if args.mqtt else None
            for _ in range(args.rounds):
                bare.append(bare_decode_fps(video))
                sink = LatencySink(inner)
                piped.append(pipeline_fps(agent, sink, frames))
                latency.extend(sink.latency_ms)
    side = 8 * args.scale
    sink_name = "MQTT QoS 0" if args.mqtt else "in-memory sink"
    print(f"video: {frames} frames {side}x{side} FFV1; {args.rounds} rounds; events to {sink_name}")
    _report(bare, piped, np.asarray(latency))
    return 0


def _video(tmp: Path, repeat: int, scale: int) -> tuple[Path, int]:
    """The held-out digits `repeat` times as an FFV1 video; returns it and its frame count."""
    from edgecascade.tools.datasets import load_split
    from edgecascade.tools.make_video import write_digits_video

    _, held = load_split()
    video = tmp / "digits.avi"
    write_digits_video(
        video,
        np.concatenate([held.images] * repeat),
        np.concatenate([held.labels] * repeat),
        fps=30.0,
        scale=scale,
    )
    return video, len(held.labels) * repeat


@contextlib.contextmanager
def _mqtt_sink(tmp: Path) -> Iterator[object]:
    """An event sink publishing QoS 0 to a local Mosquitto started for the run."""
    from edgecascade.edge.sources.mqtt_sink import MqttEventSink
    from edgecascade.shared.mqtt import MqttConnection, MqttSettings, Topics
    from edgecascade.tools.mqtt_broker import BrokerProcess

    broker = BrokerProcess(workdir=tmp).start()
    try:
        connection = MqttConnection(MqttSettings(port=broker.port, client_id="bench-camera"))
        connection.start(wait_s=5.0)
        try:
            yield MqttEventSink(connection, Topics("demo").events("bench"), qos=0)
        finally:
            connection.stop()
    finally:
        broker.stop()


def _report(bare: list[float], piped: list[float], lat: np.ndarray) -> None:
    b, p = np.median(bare), np.median(piped)
    print(f"bare decode      median {b:9.0f} frames/s   (min {min(bare):.0f}, max {max(bare):.0f})")
    print(f"camera pipeline  median {p:9.0f} frames/s   (min {min(piped):.0f}, max {max(piped):.0f})")
    print(
        f"pipeline / bare decode ratio {p / b:.2f}x   per-frame cost over decode {1e6 / p - 1e6 / b:.1f} µs"
    )
    print(
        f"read-to-published latency median {np.median(lat):.3f} ms   p99 {np.percentile(lat, 99):.3f} ms"
        f"   (queue of 4 frames included)"
    )


if __name__ == "__main__":
    raise SystemExit(main())
