"""The agent's side of the Open Inference Protocol, for every front end: the HTTP API and the MQTT
request topic both hand bytes to `AgentV2.answer` (shared.v2's answer_v2 with the agent's
`serve`), so they answer every request, good or malformed, the same way."""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

from edgecascade.edge import serving
from edgecascade.edge.agent import Agent, ServedModel
from edgecascade.edge.local_model import LocalModel
from edgecascade.shared.backends.base import TensorSpec
from edgecascade.shared.errors import InputError, ProtocolError
from edgecascade.shared.input_pipeline import describe
from edgecascade.shared.v2 import (
    MODEL_KEY,
    PROVENANCE_KEY,
    InferRequest,
    InferResponse,
    ModelMetadata,
    Reply,
    RequestLimits,
    answer_v2,
)
from edgecascade.shared.v2.answering import check_output_names
from edgecascade.shared.v2.checks import check_datatypes, check_finite

_CONVERT_SETTING = "api.convert_datatypes"


class AgentV2:
    """Metadata and inference of the agent's models over V2 messages (edge/serving.py answers
    them by each model's task). Classification runs its local phase inline (microseconds); image
    decoding, other tasks and escalations run on `executor`, never on the event loop."""

    def __init__(self, agent: Agent, executor: Executor) -> None:
        self.agent = agent
        self.executor = executor
        api = agent.profile.api
        self.limits = RequestLimits(
            max_body_bytes=int(api.max_body_mb * (1 << 20)),
            max_json_bytes=int(min(api.max_json_mb, api.max_body_mb) * (1 << 20)),
            max_tensor_bytes=api.max_tensor_elements * 8,
            max_elements=api.max_tensor_elements,
        )
        self.convert_datatypes = api.convert_datatypes
        self._facts: dict[str, _ModelFacts] = {}

    def check_model(self, name: str, version: str | None) -> None:
        """NotFoundError unless `name` (and `version`, if given) is a model being served."""
        serving.find_model(self.agent, name, version)

    def metadata(self, name: str, version: str | None) -> ModelMetadata:
        return serving.model_metadata(self.agent, name, version)

    async def answer(
        self,
        name: str | None,
        version: str | None,
        body: bytes,
        headers: Mapping[str, str],
        *,
        binary_allowed: bool = True,
        compression: bool = True,
        parameters: Mapping[str, Any] | None = None,
    ) -> Reply:
        """One infer request, as bytes in and a Reply out; never raises. `name` None: the model
        the request's parameters name, else the agent's first (MQTT requests)."""

        async def serve(request: InferRequest) -> InferResponse:
            model = name or str(request.parameters.get(MODEL_KEY) or self.agent.default_name)
            return await self.infer(model, version, request)

        return await answer_v2(
            body,
            headers,
            serve,
            limits=self.limits,
            binary_allowed=binary_allowed,
            compression=compression,
            parameters=parameters,
        )

    async def infer(self, name: str, version: str | None, request: InferRequest) -> InferResponse:
        served = serving.find_model(self.agent, name, version)
        facts = self._facts_of(served)
        check_output_names(request, facts.outputs, served.name)  # before any work
        # Strict by default: a tensor of another datatype than the model's input is a 400 naming
        # both (as Triton answers), unless the profile allows conversion; NaN/inf never reach it.
        # BYTES are encoded images for an input with a pipeline, refused by the pipeline otherwise.
        numeric = {n: a for n, a in request.inputs.items() if a.dtype != object}
        request.inputs.update(
            check_datatypes(
                numeric,
                facts.datatypes,
                convert=self.convert_datatypes,
                setting=_CONVERT_SETTING,
            )
        )
        check_finite(request.inputs)
        _check_ranks(facts, request)
        try:
            served, reply = await serving.infer_async(self.agent, name, version, request, self.executor)
        except InputError as exc:
            raise _named_field(exc, request) from None
        return InferResponse(
            model_name=served.name,
            model_version=reply.model_version,
            id=request.id,
            outputs=reply.outputs,
            parameters={PROVENANCE_KEY: reply.provenance},
        )

    def _facts_of(self, served: ServedModel) -> _ModelFacts:
        """What the request checks need of the model serving now: made once per loaded model (a
        swap loads a new one), not per request."""
        model = served.slot.current
        found = self._facts.get(served.name)
        if found is None or found.model is not model:
            found = self._facts[served.name] = _ModelFacts(
                model,
                [o.name for o in served.task.output_info()],
                {s.name: s for s in model.backend.signature.inputs},
                serving.input_datatypes(self.agent, served),
            )
        return found


@dataclass(frozen=True, slots=True)
class _ModelFacts:
    model: LocalModel
    outputs: list[str]  # the names the task serves
    specs: dict[str, TensorSpec]  # input name -> the backend's spec
    datatypes: dict[str, str]  # numeric input name -> V2 datatype


def _check_ranks(facts: _ModelFacts, request: InferRequest) -> None:
    """An input of another rank than the model's (or one less: one example without the batch
    axis) is refused naming its shape field, before any work."""
    for i, (name, arr) in enumerate(request.inputs.items()):
        spec = facts.specs.get(name)
        if spec is None or arr.dtype == object:
            continue
        if arr.ndim != len(spec.shape) and (arr.ndim != len(spec.shape) - 1 or arr.ndim == 0):
            raise ProtocolError(
                f"input {name!r} has shape {list(arr.shape)}; expected {describe(spec)}",
                field=f"inputs[{i}].shape",
            )


def _named_field(exc: InputError, request: InferRequest) -> ProtocolError:
    """A task's InputError as a ProtocolError whose field is the request input it names."""
    message = str(exc)
    part = "shape" if "shape" in message else "datatype" if "dtype" in message else "data"
    names = list(request.inputs)
    for i, name in enumerate(names):
        if f"input {name!r}" in message:
            return ProtocolError(message, field=f"inputs[{i}].{part}")
    # A classifier takes its one input under any name (BYTES images): the error is that one's.
    return ProtocolError(message, field=f"inputs[0].{part}" if len(names) == 1 else "inputs")
