"""Real videos written from the held-out digits, and real agents on the demo int8 model."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from edgecascade.edge.agent import Agent
from edgecascade.edge.config import load_profile
from edgecascade.shared.mqtt import MqttConnection, MqttSettings
from edgecascade.tools.make_video import write_digits_video
from edgecascade.tools.mqtt_broker import BrokerProcess

MODEL = Path(__file__).parents[2] / "fixtures" / "models" / "digits_edge_int8.tflite"

VideoFactory = Callable[..., Path]
AgentFactory = Callable[..., Agent]


@pytest.fixture
def held(digits_split):
    return digits_split[1]


@pytest.fixture
def make_video(tmp_path: Path, held) -> VideoFactory:
    """make_video(name, frames=N, fps=F, codec=...) -> path of a video of the first N held-out digits."""

    def make(name: str = "digits.avi", *, frames: int = 540, fps: float = 10.0, codec: str = "ffv1") -> Path:
        path = tmp_path / "videos" / name
        count = min(frames, len(held.images))
        reps = -(-frames // count)
        images = np.concatenate([held.images[:count]] * reps)[:frames]
        labels = np.concatenate([held.labels[:count]] * reps)[:frames]
        write_digits_video(path, images, labels, fps=fps, codec=codec, scale=4)
        return path

    return make


@pytest.fixture
def make_agent(tmp_path: Path) -> Iterator[AgentFactory]:
    """make_agent(camera_toml_body) -> an offline Agent from a profile file written in tmp_path."""
    agents: list[Agent] = []

    def make(camera: str, *, device_id: str = "cam-0001") -> Agent:
        path = tmp_path / f"{device_id}.toml"
        path.write_text(
            f'profile = "test"\ndevice_id = "{device_id}"\nfleet = "lab"\n'
            f'data_dir = "{tmp_path / "data"}"\nmemory_budget_mb = 100\n'
            f'[model]\npath = "{MODEL}"\n[cloud]\nurl = ""\n[camera]\n'
            + ("" if "enabled" in camera else "enabled = true\n")
            + camera
            + "\n"
        )
        agent = Agent.from_profile(load_profile(path, environ={}))
        agents.append(agent)
        return agent

    yield make
    for agent in agents:
        agent.close()


@pytest.fixture
def connection(broker: BrokerProcess) -> Iterator[MqttConnection]:
    """The camera's MQTT connection (client id cam-0001) to the test's own broker."""
    conn = MqttConnection(MqttSettings(port=broker.port, client_id="cam-0001", reconnect_max_s=1))
    assert conn.start(wait_s=5.0)
    yield conn
    conn.stop()
