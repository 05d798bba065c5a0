"""The agent's side of the Open Inference Protocol, for every front end: the HTTP API and the MQTT
request topic both hand bytes to `AgentV2.answer` (shared.v2's answer_v2 with the agent's
`serve`), so they answer every request, good or malformed, the same way."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from concurrent.futures import Executor
from typing import Any

from edgecascade.edge.agent import Agent
from edgecascade.edge.daemon.translate import (
    OUTPUTS,
    InputRules,
    has_images,
    provenance,
    to_cascade_requests,
    to_outputs,
)
from edgecascade.shared.answer import Answer
from edgecascade.shared.errors import NotFoundError
from edgecascade.shared.v2 import (
    PROVENANCE_KEY,
    InferRequest,
    InferResponse,
    MetadataTensor,
    ModelMetadata,
    Reply,
    RequestLimits,
    answer_v2,
    model_metadata,
    tensor_metadata,
)
from edgecascade.shared.v2.answering import check_output_names


def _output_metadata(labels: int) -> list[MetadataTensor]:
    """The agent's outputs (what `translate.to_outputs` returns) as V2 metadata."""
    types: dict[str, tuple[str, list[int]]] = {
        "label": ("BYTES", [-1]),
        "class_index": ("INT64", [-1]),
        "confidence": ("FP32", [-1]),
        "probabilities": ("FP32", [-1, labels]),
        "source": ("BYTES", [-1]),
    }
    return [tensor_metadata(name, *types[name]) for name in OUTPUTS]


class AgentV2:
    """Metadata and inference of the agent's model over V2 messages. The local phase runs inline
    (microseconds); image decoding and escalations run on `executor`, never on the event loop."""

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
        self.rules = InputRules(api.convert_datatypes, api.max_image_pixels)

    def check_model(self, name: str, version: str | None) -> None:
        """NotFoundError unless `name` (and `version`, if given) is the model being served."""
        card = self.agent.model.card
        if name != card.name:
            raise NotFoundError(f"unknown model {name!r}; this agent serves {card.name!r}")
        if version is not None and version != card.version:
            raise NotFoundError(f"model {name!r} has no version {version!r}; serving {card.version!r}")

    def metadata(self) -> ModelMetadata:
        card = self.agent.model.card
        return model_metadata(
            card.name,
            versions=[card.version],
            backend=card.backend,
            # Callers send features in model space (FP32) whatever the artifact's own input type.
            inputs=[tensor_metadata(t.name, "FP32", t.shape) for t in card.inputs],
            outputs=_output_metadata(len(card.labels)),
            parameters={"labels": card.labels, "heldout_accuracy": card.heldout_accuracy},
        )

    async def answer(
        self,
        name: str,
        version: str | None,
        body: bytes,
        headers: Mapping[str, str],
        *,
        binary_allowed: bool = True,
        compression: bool = True,
        parameters: Mapping[str, Any] | None = None,
    ) -> Reply:
        """One infer request, as bytes in and a Reply out; never raises."""

        async def serve(request: InferRequest) -> InferResponse:
            return await self.infer(name, version, request)

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
        self.check_model(name, version)
        card = self.agent.model.card
        wanted = check_output_names(request, list(OUTPUTS), card.name)  # before any work
        loop = asyncio.get_running_loop()
        if has_images(request):
            requests = await loop.run_in_executor(
                self.executor, to_cascade_requests, request, card, self.rules
            )
        else:
            requests = to_cascade_requests(request, card, self.rules)
        cascade = self.agent.cascade
        answers: list[Answer] = []
        for one in requests:
            result = cascade.local_phase(one)
            if not isinstance(result, Answer):
                result = await loop.run_in_executor(self.executor, cascade.cloud_phase, result)
            answers.append(result)
        return InferResponse(
            model_name=card.name,
            model_version=card.version,
            id=request.id,
            outputs=to_outputs(answers, wanted),
            parameters={PROVENANCE_KEY: [provenance(a) for a in answers]},
        )
