"""What a client learns once per server before its first escalation: whether the server speaks
the binary tensor extension, and the model input's name and datatype. Servers differ here
with default settings (MLServer advertises no extensions; a model may take FP64), and a client
that assumes instead of asking gets every escalation refused."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from edgecascade.shared.errors import CloudBadResponseError
from edgecascade.shared.v2 import ModelMetadata, ServerMetadata

log = logging.getLogger(__name__)

BINARY_EXTENSION = "binary_tensor_data"
#: Datatypes float features can be sent as without losing meaning.
FLOAT_DATATYPES = ("FP32", "FP64", "FP16")


@dataclass(frozen=True, slots=True)
class ServerFacts:
    server: str
    binary: bool  # send binary tensors (advertised, and the profile allows them)
    input_name: str
    datatype: str  # the features' V2 datatype on the wire

    def without_binary(self) -> ServerFacts:
        return ServerFacts(self.server, False, self.input_name, self.datatype)


def negotiate(
    server: ServerMetadata | None,
    model: ModelMetadata | None,
    *,
    input_name: str,
    allow_binary: bool,
) -> ServerFacts:
    """Facts from `GET /v2` and the model's metadata; either may be None where the server did
    not answer them (then: JSON, the configured input, FP32). Raises CloudBadResponseError for a
    model that cannot take float features."""
    name = f"{server.name} {server.version}" if server else "unknown server"
    binary = allow_binary and server is not None and BINARY_EXTENSION in server.extensions
    datatype = "FP32"
    if model is not None and model.inputs:
        by_name = {t.name: t for t in model.inputs}
        spec = by_name.get(input_name)
        if spec is None and len(model.inputs) == 1:
            spec = model.inputs[0]
            log.info("cloud model %s names its input %r; sending the features there", model.name, spec.name)
        if spec is None:
            raise CloudBadResponseError(
                f"cloud model {model.name} has no input {input_name!r}; inputs: {sorted(by_name)}"
            )
        input_name = spec.name
        if spec.datatype not in FLOAT_DATATYPES:
            raise CloudBadResponseError(
                f"cloud model {model.name} input {spec.name!r} is {spec.datatype}; the device sends float features"
            )
        datatype = spec.datatype
    facts = ServerFacts(name, binary, input_name, datatype)
    log.info(
        "cloud is %s: %s tensors, input %r as %s",
        facts.server,
        "binary" if facts.binary else "JSON",
        facts.input_name,
        facts.datatype,
    )
    return facts
