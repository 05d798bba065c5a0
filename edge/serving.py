"""The agent's models over the Open Inference Protocol, for every front end (local HTTP API,
MQTT requests): model metadata from each model's own signature, and infer calls answered by
the model's task, with its own outputs by name and the provenance of each example.

Classification runs its local phase inline and only escalations on the executor (the hot
path pays no thread hop); the other tasks run whole on the executor."""

from __future__ import annotations

import asyncio
from concurrent.futures import Executor
from typing import Any

from edgecascade.edge.agent import Agent, ServedModel
from edgecascade.edge.answer import Answer
from edgecascade.edge.tasks import TaskReply, TaskRequest
from edgecascade.edge.tasks.classification import ClassificationTask
from edgecascade.shared.errors import NotFoundError
from edgecascade.shared.input_pipeline import describe
from edgecascade.shared.v2 import SESSION_KEYS, InferRequest, ModelMetadata, tensor_metadata
from edgecascade.shared.v2 import model_metadata as shared_model_metadata
from edgecascade.shared.v2.datatypes import datatype_for_dtype

KEY_INPUT = "key"  # optional BYTES [N]: application keys (SKU, barcode) for lookup tables


def find_model(agent: Agent, name: str, version: str | None) -> ServedModel:
    """The served model `name` at `version` (any when None); NotFoundError otherwise."""
    served = agent.get(name)
    card = served.slot.current.card
    if version is not None and version != card.version:
        raise NotFoundError(f"model {name!r} has no version {version!r}; serving {card.version!r}")
    return served


def model_metadata(agent: Agent, name: str, version: str | None) -> ModelMetadata:
    """V2 model metadata: the model's own inputs (real names, datatypes, shapes) and the
    outputs its task serves (the model's own for detection and tensor models)."""
    served = find_model(agent, name, version)
    model = served.slot.current
    state_inputs = {p.input for p in model.card.state}
    inputs = []
    for spec in model.backend.signature.inputs:
        card_input = next((t for t in model.card.inputs if t.name == spec.name), None)
        tensor = tensor_metadata(spec.name, spec.dtype, [int(d) for d in spec.shape])
        params: dict[str, Any] = {"accepts": describe(spec, card_input.pipeline if card_input else None)}
        if spec.name in state_inputs:
            params["state"] = True  # optional: carried per session_id when absent
        tensor.parameters = params
        inputs.append(tensor)
    return shared_model_metadata(
        served.name,
        versions=[model.card.version],
        backend=model.card.backend,
        inputs=inputs,
        outputs=[tensor_metadata(o.name, o.datatype, o.shape) for o in served.task.output_info()],
        parameters={
            "task": model.card.task,
            "labels": list(model.card.labels),
            "accelerator": model.backend.accelerator,
        },
    )


def input_datatypes(agent: Agent, served: ServedModel) -> dict[str, str]:
    """Input name -> the V2 datatype the model takes (numeric inputs; BYTES takes images too)."""
    return {
        spec.name: datatype_for_dtype(spec.dtype)
        for spec in served.slot.current.backend.signature.inputs
        if spec.dtype != "object"
    }


def task_request(decoded: InferRequest, served: ServedModel) -> TaskRequest:
    """The request for `served`; `key` is an application key unless the model has an input
    of that name."""
    names = {t.name for t in served.slot.current.card.inputs}
    key_input = KEY_INPUT if KEY_INPUT not in names else None
    inputs = {n: a for n, a in decoded.inputs.items() if n != key_input}
    session = next((decoded.parameters[p] for p in SESSION_KEYS if p in decoded.parameters), None)
    return TaskRequest(
        inputs,
        request_id=decoded.id,
        session_id=None if session is None else str(session),
        key=decoded.inputs.get(key_input) if key_input else None,
    )


def wanted_outputs(decoded: InferRequest) -> list[str] | None:
    return [o.name for o in decoded.outputs] if decoded.outputs else None


def infer_sync(
    agent: Agent, name: str, version: str | None, decoded: InferRequest
) -> tuple[ServedModel, TaskReply]:
    """One infer call on the calling thread (MQTT requests, `agent predict`)."""
    served = find_model(agent, name, version)
    return served, agent.infer(served.name, task_request(decoded, served), wanted_outputs(decoded))


async def infer_async(
    agent: Agent, name: str, version: str | None, decoded: InferRequest, executor: Executor
) -> tuple[ServedModel, TaskReply]:
    """One infer call from an event loop: see the module docstring for what runs where."""
    served = find_model(agent, name, version)
    task = served.task
    request = task_request(decoded, served)
    loop = asyncio.get_running_loop()
    if not isinstance(task, ClassificationTask):
        reply = await loop.run_in_executor(
            executor, agent.infer, served.name, request, wanted_outputs(decoded)
        )
        return served, reply
    cascade = task.cascade
    if any(a.dtype == object for a in request.inputs.values()):
        # Encoded images: decoding takes milliseconds, never on the event loop.
        cascade_requests = await loop.run_in_executor(executor, task.cascade_requests, request)
    else:
        cascade_requests = task.cascade_requests(request)
    answers: list[Answer] = []
    for one in cascade_requests:
        result = cascade.local_phase(one)
        if not isinstance(result, Answer):
            result = await loop.run_in_executor(executor, cascade.cloud_phase, result)
        answers.append(result)
    return served, task.reply(answers, wanted_outputs(decoded))
