"""A network stream (HTTP on loopback, the way FFmpeg reads RTSP/HTTP) that is cut mid-way:
the source counts the outage, logs it once, reopens with backoff and answers frames again."""

from __future__ import annotations

import http.server
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgecascade.edge.sources import CameraSource, MemoryEventSink
from tests.edge.sources.conftest import AgentFactory, VideoFactory


class CuttingServer:
    """Serves one video over HTTP; the first `cut_requests` responses stop half-way (a network cut)."""

    def __init__(self, video: Path, cut_requests: int = 1) -> None:
        data = video.read_bytes()
        self.requests = 0
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.requests += 1
                body = data[: len(data) // 2] if owner.requests <= cut_requests else data
                self.send_response(200)
                self.send_header("Content-Type", "video/x-msvideo")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(body)
                self.close_connection = True

            def log_message(self, format: str, *args: object) -> None:
                return

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://user:secret@127.0.0.1:{self.server.server_port}/digits.avi"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def server(make_video: VideoFactory) -> Iterator[CuttingServer]:
    srv = CuttingServer(make_video(frames=200, fps=10.0))
    yield srv
    srv.close()


def test_cut_stream_is_reopened_with_backoff(
    server: CuttingServer, make_agent: AgentFactory, caplog: pytest.LogCaptureFixture
) -> None:
    agent = make_agent(
        f'source = "{server.url}"\nfps = 240\nreopen_min_s = 0.05\nreopen_max_s = 0.2\nstream_timeout_s = 2'
    )
    sink = MemoryEventSink()
    source = CameraSource.from_agent(agent, sink)
    assert source.spec.kind == "stream" and source.drop_when_full
    caplog.set_level(logging.INFO, logger="edgecascade.edge.sources.camera")
    source.start()
    try:
        deadline = time.monotonic() + 15
        while server.requests < 2 or source.counters()["reopen_count"] < 1:
            assert time.monotonic() < deadline, source.counters()
            time.sleep(0.01)
        # the second, uncut response: frames past the cut point are read and answered
        while source.counters()["frames_read"] < 100 + 150:
            assert time.monotonic() < deadline, source.counters()
            time.sleep(0.01)
    finally:
        source.stop(2.0)
    c = source.counters()
    assert c["read_errors"] >= 1 and c["reopen_count"] >= 1 and c["frames_failed"] == 0
    assert c["frames_processed"] + c["frames_skipped"] == c["frames_sampled"] > 0
    assert sum(e.frame == 0 for e in sink.recent()) >= 2  # frame numbers restart on each open
    # The URL's password never reaches events or logs.
    assert {e.source for e in sink.recent()} == {server.url.replace("user:secret", "***")}
    assert "secret" not in caplog.text
    drops = [r for r in caplog.records if "dropped out" in r.getMessage()]
    assert 1 <= len(drops) == c["read_errors"]  # one log line per outage
