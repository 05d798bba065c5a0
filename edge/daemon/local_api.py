"""The local HTTP API: the Open Inference Protocol (same as the cloud's, so an application uses
one client for both), health, Prometheus metrics. It only translates; the cascade answers.

Infer, the hot route, is served by this class's own ASGI entry; the other routes go through
Starlette. Starlette's routing, request and response objects cost about 40 µs a call on the
2-core test machine, more than the local model itself.

Backpressure: at most `max_inflight` requests in progress; the next gets 503 with Retry-After
instead of queueing without bound."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any, Protocol

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from edgecascade.edge.agent import Agent
from edgecascade.edge.daemon.metrics import AgentMetrics
from edgecascade.edge.daemon.v2_service import AgentV2
from edgecascade.shared.errors import NotFoundError
from edgecascade.shared.v2 import EXTENSIONS, Reply, ServerMetadata, error_reply

log = logging.getLogger(__name__)

_INFER_PATH = re.compile(r"/v2/models/([^/]+)(?:/versions/([^/]+))?/infer")


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    reply = error_reply(status, message, headers)
    return Response(reply.body, status_code=reply.status, headers=reply.headers)


class VerdictLookup(Protocol):
    """Late verdicts by request id (edge/deferred/verdicts.py)."""

    def get(self, request_id: str) -> dict[str, Any] | None: ...


class PendingLookup(Protocol):
    """Hard cases still waiting for the cloud (edge/deferred/queue.py)."""

    def contains(self, request_id: str) -> bool: ...


class LocalApi:
    def __init__(
        self,
        agent: Agent,
        executor: Executor,
        metrics: AgentMetrics,
        *,
        max_inflight: int,
        retry_after_s: int,
        max_body_bytes: int = 16 << 20,
        counters: Callable[[], dict[str, float]],
        extra_routes: list[Route] | None = None,
        verdicts: VerdictLookup | None = None,
        pending: PendingLookup | None = None,
    ) -> None:
        self.agent = agent
        self.v2 = AgentV2(agent, executor)
        self.executor = executor
        self.metrics = metrics
        self.max_inflight = max_inflight
        self.retry_after_s = retry_after_s
        self.max_body_bytes = max_body_bytes
        self.counters = counters
        self.verdicts = verdicts  # None when deferral is off
        self.pending = pending
        self.inflight = 0
        # Read when /metrics is scraped, so requests pay no gauge lock.
        metrics.inflight.set_function(lambda: self.inflight)
        self.accepting = True
        self.routes = Starlette(routes=self._routes() + (extra_routes or []))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The ASGI app: POST .../infer is answered here, everything else by `self.routes`."""
        if scope["type"] == "http" and scope["method"] == "POST":
            match = _INFER_PATH.fullmatch(scope["path"])
            if match is not None:
                await self._serve_infer(match[1], match[2], scope, receive, send)
                return
        await self.routes(scope, receive, send)

    def _routes(self) -> list[Route]:
        return [
            Route("/v2/models/{name}/infer", self._infer_not_post),
            Route("/v2/models/{name}/versions/{version}/infer", self._infer_not_post),
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
        from edgecascade.shared.version import __version__

        meta = ServerMetadata(name="edgecascade-agent", version=__version__, extensions=list(EXTENSIONS))
        return JSONResponse(meta.model_dump())

    async def model_metadata(self, request: Request) -> Response:
        try:
            meta = self.v2.metadata(request.path_params["name"], request.path_params.get("version"))
        except NotFoundError as exc:
            return _error(404, str(exc))
        return JSONResponse(meta.model_dump(exclude_none=True))

    async def model_ready(self, request: Request) -> Response:
        try:
            self.v2.check_model(request.path_params["name"], request.path_params.get("version"))
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
    async def _infer_not_post(self, request: Request) -> Response:
        return _error(405, "infer takes POST", {"Allow": "POST"})

    async def _serve_infer(
        self, name: str, version: str | None, scope: Scope, receive: Receive, send: Send
    ) -> None:
        # The common case is one message holding the whole body: no copy.
        message = await receive()
        if message["type"] == "http.disconnect":
            return  # the client left; nobody to answer
        body: bytes | bytearray = message.get("body", b"")
        too_big = len(body) > self.max_body_bytes
        if message.get("more_body", False):
            body = bytearray(body)
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
                if not too_big:
                    body += message.get("body", b"")
                    # Read (and drop) the rest of an oversized body so the connection stays usable.
                    too_big = len(body) > self.max_body_bytes
                if not message.get("more_body", False):
                    break
        if too_big:
            self.metrics.bad_requests.labels("http").inc()
            limit_mb = self.max_body_bytes / (1 << 20)
            reply = error_reply(
                413, f"request body is over the {limit_mb:g} MiB limit (api.max_body_mb)", field_name="body"
            )
        else:
            headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
            reply = await self.infer(
                name, version, bytes(body) if isinstance(body, bytearray) else body, headers
            )
        raw_headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in reply.headers.items()]
        raw_headers.append((b"content-length", str(len(reply.body)).encode()))
        await send({"type": "http.response.start", "status": reply.status, "headers": raw_headers})
        await send({"type": "http.response.body", "body": reply.body})

    async def infer(self, name: str, version: str | None, body: bytes, headers: dict[str, str]) -> Reply:
        """One V2 infer call: body and headers in, a Reply out (never raises)."""
        if not self.accepting:
            return error_reply(503, "agent is shutting down", {"Retry-After": str(self.retry_after_s)})
        if self.inflight >= self.max_inflight:
            self.metrics.rejected.labels("http").inc()
            return error_reply(503, "agent is busy; retry later", {"Retry-After": str(self.retry_after_s)})
        self.inflight += 1
        try:
            reply = await self.v2.answer(name, version, body, headers)
        finally:
            self.inflight -= 1
        if 400 <= reply.status < 500 and reply.status != 404:
            self.metrics.bad_requests.labels("http").inc()
        return reply
