"""The names the Open Inference Protocol's messages carry, spelled once for the cloud server, the
device's cloud client and the device's local API: platforms, parameter keys, model metadata."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from edgecascade.shared.v2.datatypes import datatype_for_dtype
from edgecascade.shared.v2.schema import MetadataTensor, ModelMetadata

#: Backend name (shared.backends.registry) -> V2 `platform`, as Triton and KServe spell it.
PLATFORMS: dict[str, str] = {"onnx": "onnx_onnxv1", "tflite": "tensorflow_tflite"}

# Request parameters this project reads or writes.
#: Replays a retried request's answer (cloud/idempotency.py).
IDEMPOTENCY_KEY = "idempotency_key"
#: Raw input (base64), sent only where the device profile's cloud.send_raw_input allows it.
RAW_INPUT_KEY = "raw_input_b64"
#: Ask for every output as a binary tensor (binary tensor extension).
BINARY_DATA_OUTPUT = "binary_data_output"
#: MQTT 3.1.1 has no Response Topic or Correlation Data properties: they travel as these.
REPLY_TO_KEY = "reply_to"
CORRELATION_ID_KEY = "correlation_id"
#: The agent's MQTT requests name the model they ask (default: the agent's first model).
MODEL_KEY = "model"
#: Stateful models: whose state a request continues (the first of these present).
SESSION_KEYS = ("session_id", "sequence_id")
#: Response parameter of the agent: one provenance record per example.
PROVENANCE_KEY = "provenance"


def platform_for(backend: str) -> str:
    """The V2 platform of a backend name; an unknown backend is reported under its own name."""
    return PLATFORMS.get(backend, backend)


def tensor_metadata(name: str, dtype: str, shape: Iterable[int]) -> MetadataTensor:
    """One metadata entry from a numpy dtype name (`float32`) or a V2 datatype (`FP32`)."""
    return MetadataTensor(name=name, datatype=datatype_for_dtype(dtype), shape=list(shape))


def model_metadata(
    name: str,
    *,
    versions: list[str],
    backend: str,
    inputs: Iterable[MetadataTensor],
    outputs: Iterable[MetadataTensor],
    parameters: Mapping[str, Any] | None = None,
) -> ModelMetadata:
    """`GET /v2/models/<name>`: the one builder both APIs use."""
    return ModelMetadata(
        name=name,
        versions=versions,
        platform=platform_for(backend),
        inputs=list(inputs),
        outputs=list(outputs),
        parameters=dict(parameters) if parameters else None,
    )
