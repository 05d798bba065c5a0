"""The JSON shapes of the Open Inference Protocol (KServe V2) REST messages, as pydantic models.

Wire models ignore unknown keys, since the protocol lets extensions add fields; their types are
strict, so `"shape": "3"` is an error naming the field rather than a silent coercion."""

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

#: Bumped when these models change incompatibly; served in server metadata.
SCHEMA_VERSION = 1

#: Extension names this codec implements (advertised in server metadata).
EXTENSIONS = ["binary_tensor_data"]


class _Wire(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True, protected_namespaces=())


class TensorWire(_Wire):
    """One input (request) or output (response) tensor. `data` is absent for binary tensors."""

    name: str = Field(description="Tensor name.")
    shape: list[int] = Field(description="Dimensions, row-major.")
    datatype: str = Field(description="V2 datatype: BOOL, UINT8..UINT64, INT8..INT64, FP16/32/64, BYTES.")
    parameters: dict[str, Any] | None = Field(default=None, description="e.g. binary_data_size.")
    data: Any = Field(default=None, description="Row-major values, flat or nested; absent when binary.")


class RequestedOutputWire(_Wire):
    name: str = Field(description="Output to return.")
    parameters: dict[str, Any] | None = Field(default=None, description="e.g. binary_data: true.")


class InferRequestWire(_Wire):
    id: str | None = Field(default=None, description="Request id, echoed in the response.")
    parameters: dict[str, Any] | None = Field(
        default=None, description="e.g. binary_data_output, idempotency_key."
    )
    inputs: list[TensorWire] = Field(description="Input tensors.")
    outputs: list[RequestedOutputWire] | None = Field(
        default=None, description="Outputs wanted; all if absent."
    )


class InferResponseWire(_Wire):
    model_name: str = Field(description="Model that answered.")
    model_version: str | None = Field(default=None, description="Version that answered.")
    id: str | None = Field(default=None, description="The request's id.")
    parameters: dict[str, Any] | None = Field(default=None, description="Response parameters.")
    outputs: list[TensorWire] = Field(description="Output tensors.")


class MetadataTensor(BaseModel):
    """An input or output in model metadata; -1 marks a variable dimension."""

    model_config = ConfigDict(extra="ignore")

    name: str = Field(description="Tensor name.")
    datatype: str = Field(description="V2 datatype name.")
    shape: list[int] = Field(description="Dimensions; -1 is variable (e.g. the batch).")
    parameters: dict[str, Any] | None = Field(
        None, description="Optional extras (the agent: what an input accepts, state inputs)."
    )


class ServerMetadata(BaseModel):
    """`GET /v2`."""

    model_config = ConfigDict(extra="ignore")

    name: str = Field(description="Server name.")
    version: str = Field(description="Server version.")
    extensions: list[str] = Field(default_factory=list, description="Protocol extensions supported.")


class ModelMetadata(BaseModel):
    """`GET /v2/models/<name>[/versions/<v>]`."""

    model_config = ConfigDict(extra="ignore", protected_namespaces=())

    name: str = Field(description="Model name.")
    versions: list[str] | None = Field(default=None, description="Versions available.")
    platform: str = Field(description="Framework and format, e.g. onnx_onnxv1.")
    inputs: list[MetadataTensor] = Field(description="Inputs the model expects.")
    outputs: list[MetadataTensor] = Field(description="Outputs the model produces.")
    parameters: dict[str, Any] | None = Field(default=None, description="Extra facts (labels, accuracy).")


class ErrorBody(BaseModel):
    """Body of every error status: `{"error": "<message>"}`."""

    model_config = ConfigDict(extra="ignore")

    error: str = Field(description="What went wrong, naming the field where there is one.")
    field: str | None = Field(default=None, description="The request part at fault, e.g. inputs[0].shape.")
