"""The telemetry sink extension point: a sink written in one module and registered by name is
selected by the profile, built by `edge.telemetry.build`, and drains the buffer, deleting a
record only once its destination has it. Here the destination is a JSON-lines file that is
fsynced before the records are deleted, as a sink for removable storage would do."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

from edgecascade.edge import telemetry as edge_telemetry
from edgecascade.edge.agent import Agent
from edgecascade.edge.config import load_profile
from edgecascade.edge.telemetry.buffer import TelemetryBuffer
from edgecascade.edge.telemetry.sinks import SINKS, SinkContext
from tests.cloud.ingest.support import wait_for, write_profile


class JsonLinesSink:
    """Appends each batch to `<data_dir>/telemetry.jsonl`, fsyncs, then deletes it from the buffer."""

    name = "telemetry-jsonl"

    def __init__(self, buffer: TelemetryBuffer, path: Path) -> None:
        self.buffer = buffer
        self.path = path
        self.written = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def from_context(cls, context: SinkContext) -> JsonLinesSink:
        return cls(context.buffer, context.profile.data_dir / "telemetry.jsonl")

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def counters(self) -> dict[str, int]:
        return {"written": self.written}

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            records = self.buffer.peek(100)
            if not records:
                continue
            with open(self.path, "a") as out:
                for r in records:
                    out.write(json.dumps({"seq": r.seq, "kind": r.kind, "body": json.loads(r.body)}) + "\n")
                out.flush()
                os.fsync(out.fileno())  # stored: only now may the buffer forget them
            self.buffer.delete(r.seq for r in records)
            self.written += len(records)


def test_a_sink_registered_by_name_drains_the_buffer(tmp_path, digits_split, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setitem(SINKS, "jsonl", f"{__name__}:JsonLinesSink")
    profile = load_profile(
        write_profile(tmp_path / "dev.toml", device="dev-f", port=1, mqtt=False, sink="jsonl")
    )
    agent = Agent.from_profile(profile)
    parts = edge_telemetry.build(profile, None)
    assert isinstance(parts.sink, JsonLinesSink) and parts.sink in parts.services
    assert parts.recorder is not None and parts.buffer is not None
    agent.cascade.observers.append(parts.observer)
    for service in parts.services:
        service.start()
    try:
        for i, features in enumerate(digits_split[1].features[:150]):
            agent.predict(features, request_id=f"r{i}")
        parts.recorder.flush()
        wait_for(lambda: parts.buffer is not None and parts.buffer.depth == 0, what="the buffer to drain")
    finally:
        for service in reversed(parts.services):
            service.stop(2.0)
        agent.close()
    lines = [json.loads(line) for line in (profile.data_dir / "telemetry.jsonl").read_text().splitlines()]
    first = lines[0]["seq"]
    assert [line["seq"] for line in lines] == list(range(first, first + 150))
    assert [line["body"]["request_id"] for line in lines] == [f"r{i}" for i in range(150)]


def test_the_mqtt_sink_without_a_connection_keeps_records_buffered(tmp_path) -> None:  # type: ignore[no-untyped-def]
    profile = load_profile(write_profile(tmp_path / "dev.toml", device="dev-n", port=1, mqtt=False))
    parts = edge_telemetry.build(profile, None)
    assert profile.telemetry.sink == "mqtt" and parts.sink is None
    assert parts.services == [parts.recorder]
