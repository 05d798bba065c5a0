"""Real parts for the lookup tests: the int8 edge model (counting its runs), the real cloud
model in process (it can be cut off like a network), and a table built from held-out digits."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from edgecascade.edge.cloud_client import CloudAnswer
from edgecascade.edge.cloud_client.in_process import InProcessCloudClient
from edgecascade.edge.local_model import LocalModel
from edgecascade.shared.backends import BackendOptions
from edgecascade.shared.errors import CloudUnreachableError
from edgecascade.tools.build_table import TableInputs, build_table


class CountingModel(LocalModel):
    """The real edge model; counts how many batches it ran."""

    runs = 0

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        self.runs += 1
        return super().probabilities(features)


class CuttableCloud(InProcessCloudClient):
    """The real cloud model; `reachable = False` is a network cut."""

    reachable = True

    def infer(self, features: np.ndarray, *, request_id: str, raw_input: bytes | None = None) -> CloudAnswer:
        if not self.reachable:
            raise CloudUnreachableError("network cut (test)")
        return super().infer(features, request_id=request_id, raw_input=raw_input)


@pytest.fixture
def edge_model(models_dir: Path) -> Iterator[CountingModel]:
    model = CountingModel.load(models_dir / "digits_edge_int8.tflite", BackendOptions())
    assert isinstance(model, CountingModel)
    yield model


@pytest.fixture
def cloud(models_dir: Path) -> Iterator[CuttableCloud]:
    client = CuttableCloud(models_dir / "digits_cloud.onnx")
    yield client
    client.close()


@pytest.fixture(scope="session")
def heldout_table(tmp_path_factory: pytest.TempPathFactory, models_dir: Path, digits_split) -> Path:  # type: ignore[no-untyped-def]
    """Content-keyed table over the held-out digits, version t1, from the real cloud model."""
    _, held = digits_split
    out = tmp_path_factory.mktemp("tables") / "heldout.ectable"
    build_table(
        models_dir / "digits_cloud.onnx",
        TableInputs(held.features, None, "digits-heldout"),
        out,
        scheme="content",
        name="digits",
        version="t1",
    )
    return out
