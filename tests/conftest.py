"""Fixtures with real parts: the demo models built by tools/, a real MQTT broker per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from edgecascade.tools.mqtt_broker import BrokerProcess

FIXTURES = Path(__file__).parent / "fixtures"
MODELS = FIXTURES / "models"
REPO = Path(__file__).parent.parent


@pytest.fixture(scope="session")
def models_dir() -> Path:
    """The committed demo models (rebuilt by `edgecascade models build-demo --out tests/fixtures/models`)."""
    return MODELS


@pytest.fixture(scope="session")
def digits_split():  # type: ignore[no-untyped-def]
    """(train, held-out) digits, as every model card was evaluated."""
    from edgecascade.tools.datasets import load_split

    return load_split()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[BrokerProcess]:
    """A real broker (Mosquitto, or amqtt where none is installed) on a free loopback port;
    tests may stop() and start() it to cut the network."""
    proc = BrokerProcess(workdir=tmp_path).start()
    try:
        yield proc
    finally:
        proc.stop()
