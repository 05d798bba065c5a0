"""The cloud client interface, and the do-nothing client of an offline-only device."""

from __future__ import annotations

import abc
from dataclasses import dataclass

import numpy as np

from edgecascade.edge.answer import ModelRef
from edgecascade.shared.errors import CloudUnreachableError


@dataclass(frozen=True, slots=True)
class CloudAnswer:
    probabilities: np.ndarray  # (classes,) float32
    model: ModelRef


class CloudClient(abc.ABC):
    """Asks the cloud model about one encoded example. Raises a CloudError subclass on any
    failure (never hangs past its deadline); the cascade turns that into a degraded answer."""

    @abc.abstractmethod
    def infer(self, features: np.ndarray, *, request_id: str, raw_input: bytes | None = None) -> CloudAnswer:
        """`features`: one encoded row. `raw_input` is sent only if the profile allows it."""

    def infer_tensors(
        self, inputs: dict[str, np.ndarray], *, request_id: str, outputs: list[str] | None = None
    ) -> tuple[dict[str, np.ndarray], ModelRef]:
        """Any model's named tensors in, the cloud model's `outputs` (None: all) out (detectors,
        tensor models). A client that cannot send tensors raises CloudUnreachableError."""
        raise CloudUnreachableError(f"{type(self).__name__} cannot ask the cloud with tensors")

    def close(self) -> None:  # noqa: B027 - optional hook, most clients hold nothing
        """Release pooled connections."""


class NullCloudClient(CloudClient):
    """An offline-only device: every hard case is answered locally, marked degraded."""

    def infer(self, features: np.ndarray, *, request_id: str, raw_input: bytes | None = None) -> CloudAnswer:
        raise CloudUnreachableError("no cloud configured in the profile")
