"""Hostile camera input through the real camera source (and the real `agent run`): FIFOs no one
writes to, files that open but give no frame, files damaged in the middle or cut short, frames
too large for the memory budget, servers that hold the open or send garbage, credentials in
URLs, a detector's stream that drops out. Each is one log line per outage, counted, bounded in
memory, prompt to stop, and read again when the source is back."""

from __future__ import annotations

import http.server
import json
import logging
import os
import resource
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
import requests

from edgecascade.edge.agent import Agent
from edgecascade.edge.config.profile import DeviceProfile
from edgecascade.edge.sources import CameraSource, Event, MemoryEventSink, build_camera_source
from edgecascade.edge.sources.capture import SourceSpec
from edgecascade.shared.mqtt import MqttConnection, Topics
from edgecascade.tools.build_detector_data import canvas_splits
from edgecascade.tools.datasets import Split
from edgecascade.tools.make_video import write_canvas_video
from edgecascade.tools.mqtt_broker import BrokerProcess, free_port
from tests.edge.daemon.support import DaemonProcess, write_profile
from tests.edge.sources.conftest import AgentFactory, VideoFactory
from tests.edge.sources.test_camera_mqtt import Subscriber
from tests.edge.sources.test_camera_source import wait_for
from tests.edge.tasks.test_cloud_detector_formats import _digit_detector

CAMERA_LOG = "edgecascade.edge.sources.camera"
FAST_RETRY = "reopen_min_s = 0.05\nreopen_max_s = 0.2\n"


class SlowSink(MemoryEventSink):
    """A consumer that takes `delay_s` per event (a slow uplink): the worker falls behind."""

    def __init__(self, delay_s: float) -> None:
        super().__init__()
        self.delay_s = delay_s

    def publish(self, event: Event) -> None:
        time.sleep(self.delay_s)
        super().publish(event)


def warnings_with(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and text in r.getMessage()]


def camera_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("camera-") and t.is_alive()]


def write_video(path: Path, frames: list[np.ndarray], *, fps: float = 10.0, codec: str = "FFV1") -> Path:
    """Frames (BGR, or HxW grey) through OpenCV's own writer, the way a recorder would write them."""
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(
        str(path), cv2.VideoWriter.fourcc(*codec), fps, (width, height), frames[0].ndim == 3
    )
    assert writer.isOpened(), path
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path


def declare_rate(path: Path, rate: int) -> None:
    """Rewrite the frame rate an AVI declares: its main header's microseconds per frame and its
    stream header's dwRate over dwScale = 1."""
    data = bytearray(path.read_bytes())
    struct.pack_into("<I", data, data.index(b"avih") + 8, 1_000_000 // rate if rate else 0)
    struct.pack_into("<II", data, data.index(b"strh") + 8 + 20, 1, rate)
    path.write_bytes(bytes(data))


# -- files ------------------------------------------------------------------------------------


def test_a_fifo_no_one_writes_to_is_down_with_one_line_and_read_once_a_writer_comes(
    tmp_path: Path, make_video: VideoFactory, make_agent: AgentFactory, caplog: pytest.LogCaptureFixture
) -> None:
    # Before: FFmpeg's open(2) waited for a writer for ever: no log line, no count, stop() hung.
    fifo = tmp_path / "cam.avi"
    os.mkfifo(fifo)
    video = make_video(frames=30).read_bytes()
    agent = make_agent(f'source = "{fifo}"\nfps = 10\nstream_timeout_s = 0.3\n{FAST_RETRY}')
    sink = MemoryEventSink()
    source = CameraSource.from_agent(agent, sink)
    source.start()
    try:
        wait_for(lambda: source.counters()["read_errors"] >= 3, 10.0)
        assert source.state in ("down", "opening") and source.counters()["frames_read"] == 0
        assert len(warnings_with(caplog, "a FIFO that no process wrote a video to")) == 1

        def write() -> None:  # a recorder that pipes its output in (it blocks until a reader opens)
            with open(fifo, "wb") as out:
                out.write(video)

        writer = threading.Thread(target=write, daemon=True)
        writer.start()
        assert source.wait_finished(10.0), source.counters()
        writer.join(5.0)
    finally:
        source.stop(2.0)
    c = source.counters()
    assert c["frames_processed"] == 30 == len(sink.recent()) and c["reopen_count"] == 1
    assert not camera_threads()


def test_a_daemon_with_a_fifo_source_serves_its_api_and_stops_at_once(tmp_path: Path) -> None:
    # Before: the camera's stop() waited on the blocked open for the whole shutdown timeout (10 s),
    # leaving the other services 0.1 s each.
    fifo = tmp_path / "cam.avi"
    os.mkfifo(fifo)
    port = free_port()
    camera = f'[camera]\nenabled = true\nsource = "{fifo}"\nstream_timeout_s = 0.3\n{FAST_RETRY}'
    log = tmp_path / "d.log"
    daemon = DaemonProcess(write_profile(tmp_path, api_port=port, extra=camera), port, log).start()
    try:
        wait_for(lambda: metric(daemon.url, "camera_read_errors_total") >= 2, 10.0)
        assert requests.get(daemon.url + "/v2/health/live", timeout=2).status_code == 200
        started = time.monotonic()
        daemon.signal()
        assert daemon.wait(15.0) == 0
        assert time.monotonic() - started < 4.0
    finally:
        daemon.stop()
    text = log.read_text()
    assert text.count("a FIFO that no process wrote a video to") == 1 and "Traceback" not in text


def metric(url: str, name: str) -> float:
    """One series of the daemon's /metrics (0 while it is not there yet)."""
    for line in requests.get(url + "/metrics", timeout=2).text.splitlines():
        if line.startswith(f"edgecascade_{name} "):
            return float(line.split()[-1])
    return 0.0


def test_a_file_that_opens_but_gives_no_frame_backs_off_and_logs_once(
    tmp_path: Path, make_video: VideoFactory, make_agent: AgentFactory, caplog: pytest.LogCaptureFixture
) -> None:
    # Before: each open "succeeded", so the backoff was reset every try: a reopen every 20 ms,
    # two log lines ("is back", "dropped out") per try and reopen_count counting each one.
    path = tmp_path / "empty.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"FFV1"), 10, (32, 32))
    writer.release()  # a header and no frame, as a recorder killed at once leaves it
    caplog.set_level(logging.INFO, logger=CAMERA_LOG)
    agent = make_agent(f'source = "{path}"\nfps = 10\nreopen_min_s = 0.02\nreopen_max_s = 0.16')
    sink = MemoryEventSink()
    source = CameraSource.from_agent(agent, sink)
    source.start()
    try:
        time.sleep(1.5)
        c = source.counters()
        # 0.02 + 0.04 + 0.08 + 0.16 per try after that: about 11 tries in 1.5 s, not 75.
        assert 4 <= c["read_errors"] <= 14 and c["reopen_count"] == 0 and c["frames_read"] == 0
        assert len(warnings_with(caplog, "gave no frame after opening")) == 1
        assert not [r for r in caplog.records if "is back" in r.getMessage()]
        os.replace(make_video("ready.avi", frames=20), path)
        assert source.wait_finished(10.0), source.counters()
    finally:
        source.stop(2.0)
    assert source.counters()["reopen_count"] == 1 and len(sink.recent()) == 20
    assert len([r for r in caplog.records if "is back" in r.getMessage()]) == 1


def test_a_file_damaged_in_the_middle_is_read_past_the_damage_and_a_cut_one_says_so(
    tmp_path: Path,
    make_video: VideoFactory,
    make_agent: AgentFactory,
    held: Split,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Before: a frame that does not decode ended the file ("end of file"): every frame past the
    # damage was lost without a word; a file cut short ended as if whole.
    video = make_video(frames=120)
    data = bytearray(video.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 3000] = np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8).tobytes()
    damaged = tmp_path / "damaged.avi"
    damaged.write_bytes(bytes(data))
    agent = make_agent(f'source = "{damaged}"\nfps = 10')
    sink = MemoryEventSink()
    source = CameraSource.from_agent(agent, sink)
    source.start()
    assert source.wait_finished(10.0), source.counters()
    source.stop(1.0)
    c = source.counters()
    assert c["frames_processed"] >= 100 and c["frames_corrupt"] >= 1 and c["frames_failed"] == 0
    # The frames past the damage are the file's last ones, answered as the model answers them.
    direct = [agent.predict(row).label for row in held.features[:120]]
    assert [e.label for e in sink.recent()[-40:]] == direct[-40:]
    assert len(warnings_with(caplog, "does not decode; read on past it")) == 1
    assert not warnings_with(caplog, "truncated?")  # damage drops frames unseen: no false alarm

    cut = tmp_path / "cut.avi"
    cut.write_bytes(video.read_bytes()[:middle])
    source = CameraSource.from_agent(make_agent(f'source = "{cut}"\nfps = 10', device_id="cam-0002"), sink)
    source.start()
    assert source.wait_finished(10.0), source.counters()
    source.stop(1.0)
    assert 40 <= source.counters()["frames_processed"] < 70
    assert len(warnings_with(caplog, "though its header counts 120 (truncated?)")) == 1


# -- memory --------------------------------------------------------------------------------


def test_the_frame_queue_is_bounded_in_bytes_not_only_in_frames(
    tmp_path: Path, make_agent: AgentFactory
) -> None:
    # Before: queue_size frames of whatever size the source sends (8 x 11 MiB here; 8 x 183 MiB
    # for an 8000x8000 stream). The profile's budget is 100 MiB: frames in flight get 25 MiB.
    frames = [np.full((2000, 2000, 3), 20 * i, np.uint8) for i in range(10)]
    video = write_video(tmp_path / "big.avi", frames, codec="MJPG")
    source = CameraSource.from_agent(
        make_agent(f'source = "{video}"\nfps = 10\nqueue_size = 8'), SlowSink(0.1)
    )
    assert source.max_frame_bytes == 25 << 20
    source.start()
    assert source.wait_finished(20.0), source.counters()
    source.stop(1.0)
    c = source.counters()
    assert c["frames_processed"] == 10 and c["frames_skipped"] == 0
    assert c["queue_high_water"] == 2  # 2 x 11.4 MiB fit in 25 MiB, a third does not


def test_a_daemon_refuses_frames_over_its_memory_budget_and_reads_the_next_file(
    tmp_path: Path, make_video: VideoFactory
) -> None:
    # Before: the 8000x8000 frames (183 MiB each) were decoded, queued and answered: the daemon's
    # peak RSS went past 700 MiB against a budget of 300.
    path = tmp_path / "cam.avi"
    write_video(path, [np.full((8000, 8000, 3), v, np.uint8) for v in (40, 200)], codec="MJPG")
    port = free_port()
    camera = f'[camera]\nenabled = true\nsource = "{path}"\nfps = 10\n{FAST_RETRY}'
    log = tmp_path / "d.log"
    daemon = DaemonProcess(write_profile(tmp_path, api_port=port, extra=camera), port, log).start()
    try:
        wait_for(lambda: metric(daemon.url, "camera_read_errors_total") >= 2, 15.0)
        assert requests.get(daemon.url + "/v2/health/live", timeout=2).status_code == 200
        assert peak_rss_mib(daemon) < 250
        os.replace(make_video("small.avi", frames=20), path)
        wait_for(lambda: metric(daemon.url, "camera_frames_processed_total") == 20, 15.0)
        assert metric(daemon.url, "camera_reopen_count_total") == 1
    finally:
        daemon.stop()
    text = log.read_text()
    assert text.count("8000x8000 frames (183 MiB each) are over the camera's share of the memory budget") == 1


def peak_rss_mib(daemon: DaemonProcess) -> float:
    assert daemon.proc is not None
    for line in Path(f"/proc/{daemon.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


# -- streams --------------------------------------------------------------------------------


class TcpServer:
    """A real TCP server on loopback: `silent` accepts and never sends; `garbage` answers every
    request with random bytes and closes."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.accepted = 0
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        rng = np.random.default_rng(1)
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:  # closed
                return
            self.accepted += 1
            self.conns.append(conn)
            if self.mode == "garbage":
                try:
                    conn.recv(4096)
                    conn.sendall(rng.integers(0, 256, 50_000, dtype=np.uint8).tobytes())
                except OSError:  # the client gave up first
                    pass
                conn.close()

    def close(self) -> None:
        self.sock.close()
        for conn in self.conns:
            conn.close()


def test_stop_is_prompt_while_a_silent_server_holds_the_open(make_agent: AgentFactory) -> None:
    # Before: stop() waited for OpenCV's open to time out (stream_timeout_s), however long.
    server = TcpServer("silent")
    try:
        url = f"rtsp://127.0.0.1:{server.port}/stream"
        source = CameraSource.from_agent(
            make_agent(f'source = "{url}"\nstream_timeout_s = 4'), MemoryEventSink()
        )
        source.start()
        wait_for(lambda: server.accepted >= 1)
        started = time.monotonic()
        source.stop(5.0)
        assert time.monotonic() - started < 1.5 and source.state == "stopped"
    finally:
        server.close()


def test_a_server_that_sends_garbage_is_one_line_and_no_busy_loop(
    make_agent: AgentFactory, caplog: pytest.LogCaptureFixture
) -> None:
    # Guard (this already behaved): each try counted, one line per outage, the backoff's pace.
    server = TcpServer("garbage")
    try:
        url = f"http://cam:secret@127.0.0.1:{server.port}/video.mjpg"
        source = CameraSource.from_agent(
            make_agent(f'source = "{url}"\nstream_timeout_s = 1\nreopen_min_s = 0.05\nreopen_max_s = 0.1'),
            MemoryEventSink(),
        )
        cpu = resource.getrusage(resource.RUSAGE_SELF)
        source.start()
        time.sleep(1.5)
        source.stop(2.0)
        after = resource.getrusage(resource.RUSAGE_SELF)
    finally:
        server.close()
    assert after.ru_utime + after.ru_stime - cpu.ru_utime - cpu.ru_stime < 0.75  # of 1.5 s
    assert server.accepted >= 5 and source.counters()["read_errors"] >= 5
    assert len(warnings_with(caplog, "cannot be opened")) == 1 and "secret" not in caplog.text


@pytest.mark.parametrize(
    ("url", "name"),
    [
        ("rtsp://admin:p@ss@127.0.0.1:1/stream1", "rtsp://***@127.0.0.1:1/stream1"),
        (
            "http://127.0.0.1:1/video.cgi?user=admin&pwd=p%40ss",
            "http://127.0.0.1:1/video.cgi?user=admin&pwd=***",
        ),
        ("rtsp://127.0.0.1:1/live?token=p@ss;key=p@ss", "rtsp://127.0.0.1:1/live?token=***;key=***"),
    ],
)
def test_a_password_with_an_at_sign_or_in_the_query_stays_out_of_logs_and_events(
    url: str, name: str, make_agent: AgentFactory, caplog: pytest.LogCaptureFixture
) -> None:
    # Before: the redaction stopped at the first @ ("rtsp://***@ss@...") and kept query secrets.
    assert SourceSpec.parse(url).name == name
    source = CameraSource.from_agent(make_agent(f'source = "{url}"\n{FAST_RETRY}'), MemoryEventSink())
    source.start()
    wait_for(lambda: source.counters()["read_errors"] >= 1)
    source.stop(1.0)
    assert "p@ss" not in caplog.text and "p%40ss" not in caplog.text and name in caplog.text


class VideoServer:
    """Serves one video over HTTP. mode: `cut` (stop half-way, a network cut), `gone` (404, the
    camera is off) or `full`."""

    def __init__(self, video: Path) -> None:
        data = video.read_bytes()
        self.mode = "cut"
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if owner.mode == "gone":
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "video/x-msvideo")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                body = data[: len(data) // 2] if owner.mode == "cut" else data
                for start in range(0, len(body), len(data) // 20):  # about a camera's pace
                    self.wfile.write(body[start : start + len(data) // 20])
                    time.sleep(0.01)
                self.close_connection = True
                if owner.mode == "cut":
                    owner.mode = "gone"

            def log_message(self, format: str, *args: object) -> None:
                return

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/canvases.avi"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def detector_stream(tmp_path: Path) -> Iterator[VideoServer]:
    _, held = canvas_splits(train_count=1, held_count=8)
    video = tmp_path / "canvases.avi"
    write_canvas_video(video, held.images, held.boxes, held.classes, hold=4, fps=10)
    server = VideoServer(video)
    yield server
    server.close()


def test_a_detector_stream_that_drops_out_ends_its_objects_and_starts_new_ones_when_back(
    tmp_path: Path, detector_stream: VideoServer, broker: BrokerProcess, connection: MqttConnection
) -> None:
    # Before: objects seen before the drop stayed open for the whole outage (for ever if the
    # camera never came back), then matched frame 0 of the next session as "updates".
    edge = _digit_detector("digit_detector_int8.onnx", tmp_path / "edge" / "digit_detector_int8.onnx")
    profile = DeviceProfile.model_validate(
        {
            "profile": "test",
            "device_id": "cam-0001",
            "fleet": "lab",
            "data_dir": str(tmp_path / "data"),
            "memory_budget_mb": 512,
            "deferred": {"enabled": False},
            "telemetry": {"enabled": False},
            "lookup": {"cache": {"enabled": False}},
            "camera": {
                "enabled": True,
                "model": "digits",
                "source": detector_stream.url,
                "fps": 240,
                "event_qos": 1,
                "queue_size": 64,
                "reopen_min_s": 0.05,
                "reopen_max_s": 0.2,
                "stream_timeout_s": 2,
            },
            "models": [{"name": "digits", "path": str(edge), "detection": {"report_threshold": 0.5}}],
        }
    )
    agent = Agent.from_profile(profile)
    subscriber = Subscriber(broker.port, Topics("lab").events("cam-0001"))
    try:
        assert subscriber.ready.wait(5.0)
        source = build_camera_source(agent, connection)
        assert source is not None
        source.start()
        wait_for(lambda: source.counters()["read_errors"] >= 2, 15.0)  # cut, then 404s: down
        wait_for(lambda: subscriber_kinds(subscriber)["end"] == subscriber_kinds(subscriber)["new"] > 0)
        assert source.state in ("down", "opening")
        before = len(subscriber.messages)
        detector_stream.mode = "full"
        wait_for(lambda: source.counters()["reopen_count"] == 1, 15.0)
        wait_for(lambda: subscriber_kinds(subscriber)["new"] > subscriber_kinds(subscriber, before)["new"])
        source.stop(2.0)
        subscriber.wait(source.counters()["events_published"])
    finally:
        subscriber.close()
        agent.close()
    trails: dict[str, list[str]] = {}
    for event in subscriber.messages:
        trails.setdefault(str(event["id"]), []).append(str(event["type"]))
    assert any(int(str(e["frame"])) == 0 for e in subscriber.messages[before:])  # a new session
    for trail in trails.values():  # each object whole: one new, one end, updates between
        assert (
            trail[0] == "new" and trail[-1] == "end" and Counter(trail)["new"] == Counter(trail)["end"] == 1
        )
    first_ids = {str(e["id"]) for e in subscriber.messages[:before]}
    assert first_ids and not first_ids & {str(e["id"]) for e in subscriber.messages[before:]}


def subscriber_kinds(subscriber: Subscriber, upto: int | None = None) -> Counter[str]:
    return Counter(str(e["type"]) for e in subscriber.messages[:upto])


# -- odd but valid videos (guards: these already behaved) -------------------------------------


def _tiny_at_10000_fps(tmp_path: Path) -> tuple[str, int]:
    path = write_video(
        tmp_path / "tiny.avi", [np.full((1, 1, 3), 9 * i, np.uint8) for i in range(20)], codec="MJPG"
    )
    declare_rate(path, 10_000)
    return str(path), 20  # no usable rate: every frame


def _grey_at_0_fps(tmp_path: Path) -> tuple[str, int]:
    path = write_video(tmp_path / "grey.avi", [np.full((32, 32), 9 * i, np.uint8) for i in range(20)])
    declare_rate(path, 0)
    return str(path), 8  # FFmpeg falls back to 25 fps: 10 of 25 a second


def _rgba_png_sequence(tmp_path: Path) -> tuple[str, int]:
    for i in range(10):
        cv2.imwrite(str(tmp_path / f"f{i:03d}.png"), np.full((16, 16, 4), 20 * i, np.uint8))
    return str(tmp_path / "f%03d.png"), 4  # read at 25 fps


@pytest.mark.parametrize("make", [_tiny_at_10000_fps, _grey_at_0_fps, _rgba_png_sequence])
def test_odd_but_valid_videos_are_answered(
    tmp_path: Path, make: Callable[[Path], tuple[str, int]], make_agent: AgentFactory
) -> None:
    source_path, expected = make(tmp_path)
    sink = MemoryEventSink()
    source = CameraSource.from_agent(make_agent(f'source = "{source_path}"\nfps = 10'), sink)
    source.start()
    assert source.wait_finished(10.0), source.counters()
    source.stop(1.0)
    c = source.counters()
    assert c["frames_processed"] == expected == len(sink.recent()) and c["frames_failed"] == 0
    assert json.loads(sink.recent()[0].to_json())["label"] in [str(d) for d in range(10)]
