"""The local HTTP API: the Open Inference Protocol (same as the cloud's, so an application uses
one client for both), health, Prometheus metrics. It only translates; the cascade answers.

Backpressure: at most `max_inflight` requests in progress; the next gets 503 with Retry-After
instead of queueing without bound."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from edge.agent import Agent
from edge.daemon.metrics import AgentMetrics
from edge.daemon.translate import provenance, to_cascade_requests, to_outputs
from shared.answer import Answer
from shared.errors import EdgecascadeError, InputError, NotFoundError, ProtocolError, UnavailableError
from shared.v2 import EXTENSIONS, decode_infer_request, encode_infer_response

log = logging.getLogger(__name__)


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


class LocalApi:
    def __init__(
        self,
        agent: Agent,
        executor: Executor,
        metrics: AgentMetrics,
        *,
        max_inflight: int,
        retry_after_s: int,
        counters: Callable[[], dict[str, float]],
        extra_routes: list[Route] | None = None,
        verdicts: Any = None,
        pending: Any = None,
    ) -> None:
        self.agent = agent
        self.executor = executor
        self.metrics = metrics
        self.max_inflight = max_inflight
        self.retry_after_s = retry_after_s
        self.counters = counters
        self.verdicts = verdicts  # edge.deferred verdict store, or None when deferral is off
        self.pending = pending  # edge.deferred queue
        self.inflight = 0
        self.accepting = True
        self.app = Starlette(routes=self._routes() + (extra_routes or []))

    def _routes(self) -> list[Route]:
        # infer first: Starlette tries routes in order, and infer is the hot one.
        return [
            Route("/v2/models/{name}/infer", self.infer, methods=["POST"]),
            Route("/v2/models/{name}/versions/{version}/infer", self.infer, methods=["POST"]),
            Route("/v2", self.server_metadata),
            Route("/v2/health/live", self.live),
            Route("/v2/health/ready", self.ready),
            Route("/v2/models/{name}", self.model_metadata),
            Route("/v2/models/{name}/versions/{version}", self.model_metadata),
            Route("/v2/models/{name}/ready", self.model_ready),
            Route("/v2/models/{name}/versions/{version}/ready", self.model_ready),
            Route("/metrics", self.prometheus),
            Route("/v2/verdicts/{request_id}", self.verdict),
        ]

    # -- health and metadata --------------------------------------------------------------
    async def live(self, request: Request) -> Response:
        return Response(status_code=200)

    async def ready(self, request: Request) -> Response:
        return Response(status_code=200 if self.accepting and not self.agent.model.closed else 503)

    async def server_metadata(self, request: Request) -> Response:
        from edgecascade import __version__

        return JSONResponse(
            {"name": "edgecascade-agent", "version": __version__, "extensions": list(EXTENSIONS)}
        )

    def _check_model(self, request: Request) -> None:
        card = self.agent.model.card
        name, version = request.path_params["name"], request.path_params.get("version")
        if name != card.name:
            raise NotFoundError(f"unknown model {name!r}; this agent serves {card.name!r}")
        if version is not None and version != card.version:
            raise NotFoundError(f"model {name!r} has no version {version!r}; serving {card.version!r}")

    async def model_metadata(self, request: Request) -> Response:
        try:
            self._check_model(request)
        except NotFoundError as exc:
            return _error(404, str(exc))
        card = self.agent.model.card
        return JSONResponse(
            {
                "name": card.name,
                "versions": [card.version],
                "platform": "tflite" if card.backend == "tflite" else "onnx_onnxv1",
                "inputs": [{"name": t.name, "datatype": "FP32", "shape": t.shape} for t in card.inputs],
                "outputs": [
                    {"name": "label", "datatype": "BYTES", "shape": [-1]},
                    {"name": "class_index", "datatype": "INT64", "shape": [-1]},
                    {"name": "confidence", "datatype": "FP32", "shape": [-1]},
                    {"name": "probabilities", "datatype": "FP32", "shape": [-1, len(card.labels)]},
                    {"name": "source", "datatype": "BYTES", "shape": [-1]},
                ],
            }
        )

    async def model_ready(self, request: Request) -> Response:
        try:
            self._check_model(request)
        except NotFoundError as exc:
            return _error(404, str(exc))
        return await self.ready(request)

    async def verdict(self, request: Request) -> Response:
        """The late cloud verdict of a deferred hard case: 200 with it, 202 while it is queued,
        404 for a request id that was never deferred (or whose verdict has expired)."""
        request_id = request.path_params["request_id"]
        if self.verdicts is None:
            return _error(404, "deferred escalation is off in this agent's profile")
        found = self.verdicts.get(request_id)
        if found is not None:
            return JSONResponse(found)
        if self.pending is not None and self.pending.contains(request_id):
            return JSONResponse({"request_id": request_id, "state": "queued"}, status_code=202)
        return _error(404, f"no deferred case with request id {request_id!r}")

    async def prometheus(self, request: Request) -> Response:
        body = self.metrics.render(self.counters())
        return Response(body, media_type="text/plain; version=0.0.4")

    # -- inference --------------------------------------------------------------------------
    async def infer(self, request: Request) -> Response:
        if not self.accepting:
            return _error(503, "agent is shutting down", {"Retry-After": str(self.retry_after_s)})
        if self.inflight >= self.max_inflight:
            self.metrics.rejected.labels("http").inc()
            return _error(503, "agent is busy; retry later", {"Retry-After": str(self.retry_after_s)})
        self.inflight += 1
        self.metrics.inflight.inc()
        try:
            self._check_model(request)
            body = await request.body()
            decoded = decode_infer_request(body, request.headers)
            wanted = [o.name for o in decoded.outputs] if decoded.outputs else None
            answers = await self._answer(decoded)
            payload, headers = encode_infer_response(
                self.agent.model.card.name,
                self.agent.model.card.version,
                decoded.id,
                to_outputs(answers, wanted),
                binary_outputs=_binary_outputs(decoded),
                parameters={"provenance": [provenance(a) for a in answers]},
            )
            return Response(payload, headers=headers)
        except NotFoundError as exc:
            return _error(404, str(exc))
        except (ProtocolError, InputError) as exc:
            self.metrics.bad_requests.labels("http").inc()
            return _error(400, str(exc))
        except UnavailableError as exc:
            return _error(503, str(exc), {"Retry-After": str(self.retry_after_s)})
        except EdgecascadeError as exc:
            log.warning("infer failed: %s", exc)
            return _error(500, str(exc))
        finally:
            self.inflight -= 1
            self.metrics.inflight.dec()

    async def _answer(self, decoded: Any) -> list[Answer]:
        """Local phase inline (microseconds); only escalations go to a thread, so the common
        case pays no thread hop and a slow cloud never blocks the event loop."""
        cascade = self.agent.cascade
        answers: list[Answer] = []
        for request in to_cascade_requests(decoded, self.agent.model.card):
            result = cascade.local_phase(request)
            if not isinstance(result, Answer):
                result = await asyncio.get_running_loop().run_in_executor(
                    self.executor, cascade.cloud_phase, result
                )
            answers.append(result)
        return answers


def _binary_outputs(decoded: Any) -> set[str] | bool:
    if decoded.outputs:
        return {o.name for o in decoded.outputs if o.binary}
    return bool(decoded.binary_output_default)
