"""The Open Inference Protocol (KServe V2) REST messages, defined once for the cloud server,
the device's cloud client and the device's local HTTP API. No web framework imports."""

from edgecascade.shared.v2.codec import (
    BINARY_TYPE,
    HEADER_LENGTH,
    JSON_TYPE,
    InferRequest,
    InferResponse,
    RequestedOutput,
    decode_infer_request,
    decode_infer_response,
    encode_infer_request,
    encode_infer_response,
)
from edgecascade.shared.v2.datatypes import DATATYPES, datatype_of
from edgecascade.shared.v2.schema import (
    EXTENSIONS,
    SCHEMA_VERSION,
    ErrorBody,
    MetadataTensor,
    ModelMetadata,
    ServerMetadata,
)

__all__ = [
    "BINARY_TYPE",
    "DATATYPES",
    "EXTENSIONS",
    "HEADER_LENGTH",
    "JSON_TYPE",
    "SCHEMA_VERSION",
    "ErrorBody",
    "InferRequest",
    "InferResponse",
    "MetadataTensor",
    "ModelMetadata",
    "RequestedOutput",
    "ServerMetadata",
    "datatype_of",
    "decode_infer_request",
    "decode_infer_response",
    "encode_infer_request",
    "encode_infer_response",
]
