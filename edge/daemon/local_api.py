"""The local HTTP API: the Open Inference Protocol (same as the cloud's, so an application uses
one client for both), health, Prometheus metrics. It only translates; the cascade answers.

The app is plain ASGI on the agent's own server (http_server.py): infer, the hot route, reads
its body here; the other routes are a table of path patterns to small methods that return a
Reply. A web framework would cost
about 40 µs a request on the 2-core test machine (more than the local model itself) and ~20 ms
of imports at every start.

Backpressure: at most `max_inflight` requests in progress, and at most `max_buffered_bytes` of
their bodies in memory (a Content-Length is taken at its word before the body is read, a
chunked body as it arrives); the next gets 503 with Retry-After instead of queueing without
bound. A body declared over `max_body_bytes` gets 413 before it is read."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any, Protocol

import orjson

from edgecascade.edge.agent import Agent
from edgecascade.edge.daemon.http_server import Receive, Scope, Send
from edgecascade.edge.daemon.metrics import AgentMetrics
from edgecascade.edge.daemon.v2_service import AgentV2
from edgecascade.shared.errors import NotFoundError
from edgecascade.shared.v2 import EXTENSIONS, JSON_TYPE, Reply, ServerMetadata, error_reply
from edgecascade.shared.v2.limits import BodyBudget

log = logging.getLogger(__name__)

#: A read-only route: its path parameters in, a Reply out.
Handler = Callable[[dict[str, str]], Reply]

_INFER_PATH = re.compile(r"/v2/models/([^/]+)(?:/versions/([^/]+))?/infer")
_READ_METHODS = ("GET", "HEAD")
_BUFFERED_FULL = (
    "agent is busy: request bodies in memory are at their limit (api.max_buffered_mb); retry later"
)


def _json(doc: Any, status: int = 200) -> Reply:
    return Reply(status, orjson.dumps(doc), {"content-type": JSON_TYPE})


def _path(template: str) -> re.Pattern[str]:
    """`/v2/models/{name}` -> a pattern with one named group per `{param}` (one path segment)."""
    return re.compile(re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template))


async def _send(send: Send, reply: Reply) -> None:
    raw_headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in reply.headers.items()]
    raw_headers.append((b"content-length", str(len(reply.body)).encode()))
    await send({"type": "http.response.start", "status": reply.status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": reply.body})  # uvicorn drops it for HEAD


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
        max_buffered_bytes: int = 64 << 20,
        counters: Callable[[], dict[str, float]],
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
        # 40 clients uploading 15 MiB bodies at once took the daemon to 692 MiB before this bound.
        self.bodies = BodyBudget(max_buffered_bytes, max_body_bytes)
        self.counters = counters
        self.verdicts = verdicts  # None when deferral is off
        self.pending = pending
        self.inflight = 0
        # Read when /metrics is scraped, so requests pay no gauge lock.
        metrics.inflight.set_function(lambda: self.inflight)
        self.accepting = True
        self.routes = [(_path(template), handler) for template, handler in self._routes()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The ASGI app: POST .../infer is answered by `_serve_infer`, the rest by `route`."""
        if scope["type"] != "http":
            return  # uvicorn runs with lifespan and websockets off: nothing else arrives
        method, path = scope["method"], scope["path"]
        match = _INFER_PATH.fullmatch(path)
        if match is not None:
            if method == "POST":
                await self._serve_infer(match[1], match[2], scope, receive, send)
            else:
                await _send(send, error_reply(405, "infer takes POST", {"Allow": "POST"}))
            return
        await _send(send, self.route(method, path))

    def route(self, method: str, path: str) -> Reply:
        """The reply of a read-only route: 404 for an unknown path, 405 for a method other
        than GET or HEAD."""
        for pattern, handler in self.routes:
            match = pattern.fullmatch(path)
            if match is None:
                continue
            if method not in _READ_METHODS:
                return error_reply(405, f"{path} takes GET", {"Allow": ", ".join(_READ_METHODS)})
            return handler(match.groupdict())
        return error_reply(404, f"no route {path}; the API is under /v2 (and /metrics)")

    def _routes(self) -> list[tuple[str, Handler]]:
        return [
            ("/v2", self.server_metadata),
            ("/v2/health/live", self.live),
            ("/v2/health/ready", self.ready),
            ("/v2/models/{name}", self.model_metadata),
            ("/v2/models/{name}/versions/{version}", self.model_metadata),
            ("/v2/models/{name}/ready", self.model_ready),
            ("/v2/models/{name}/versions/{version}/ready", self.model_ready),
            ("/metrics", self.prometheus),
            ("/v2/verdicts/{request_id}", self.verdict),
        ]

    # -- health and metadata --------------------------------------------------------------
    def live(self, params: dict[str, str]) -> Reply:
        return Reply(200, b"", {})

    def ready(self, params: dict[str, str]) -> Reply:
        return Reply(200 if self.accepting and not self.agent.model.closed else 503, b"", {})

    def server_metadata(self, params: dict[str, str]) -> Reply:
        from edgecascade.shared.version import __version__

        meta = ServerMetadata(name="edgecascade-agent", version=__version__, extensions=list(EXTENSIONS))
        return _json(meta.model_dump())

    def model_metadata(self, params: dict[str, str]) -> Reply:
        try:
            meta = self.v2.metadata(params["name"], params.get("version"))
        except NotFoundError as exc:
            return error_reply(404, str(exc))
        return _json(meta.model_dump(exclude_none=True))

    def model_ready(self, params: dict[str, str]) -> Reply:
        try:
            self.v2.check_model(params["name"], params.get("version"))
        except NotFoundError as exc:
            return error_reply(404, str(exc))
        return self.ready(params)

    def verdict(self, params: dict[str, str]) -> Reply:
        """The late cloud verdict of a deferred hard case: 200 with it, 202 while it is queued,
        404 for a request id that was never deferred (or whose verdict has expired)."""
        request_id = params["request_id"]
        if self.verdicts is None:
            return error_reply(404, "deferred escalation is off in this agent's profile")
        found = self.verdicts.get(request_id)
        if found is not None:
            return _json(found)
        if self.pending is not None and self.pending.contains(request_id):
            return _json({"request_id": request_id, "state": "queued"}, status=202)
        return error_reply(404, f"no deferred case with request id {request_id!r}")

    def prometheus(self, params: dict[str, str]) -> Reply:
        body = self.metrics.render(self.counters())
        return Reply(200, body, {"content-type": "text/plain; version=0.0.4; charset=utf-8"})

    # -- inference --------------------------------------------------------------------------
    async def _serve_infer(
        self, name: str, version: str | None, scope: Scope, receive: Receive, send: Send
    ) -> None:
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        # llhttp has checked Content-Length; a chunked body declares nothing (0) and is
        # counted as it arrives.
        declared = int(headers.get("content-length") or 0)
        refused = self._admit(declared)
        if refused is not None:
            await _send(send, refused)  # before the body is read: the server drops it
            return
        self.inflight += 1
        held = declared  # this request's share of the body budget (taken in _admit), held until answered
        try:
            # The common case is one message holding the whole body: no copy.
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the client left; nobody to answer
            body: bytes | bytearray = message.get("body", b"")
            refused = None
            if message.get("more_body", False):
                body = bytearray(body)
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        return
                    # Once refused, the rest is read and dropped so the connection stays usable.
                    if refused is None:
                        body += message.get("body", b"")
                        if len(body) > self.max_body_bytes:
                            refused = self._too_big()
                        elif len(body) > held:  # a chunked body: take its share as it grows
                            refused = self._admit_more(len(body) - held)
                            held = len(body) if refused is None else held
                    if not message.get("more_body", False):
                        break
            if refused is None and len(body) > self.max_body_bytes:
                refused = self._too_big()
            if refused is not None:
                reply = refused
            else:
                raw = bytes(body) if isinstance(body, bytearray) else body
                reply = await self._answer(name, version, raw, headers)
        finally:
            self.inflight -= 1
            self.bodies.give(held)
        await _send(send, reply)

    def _admit(self, declared: int) -> Reply | None:
        """The refusal of a request before its body is read, or None to take it."""
        if not self.accepting:
            return error_reply(503, "agent is shutting down", {"Retry-After": str(self.retry_after_s)})
        if self.inflight >= self.max_inflight:
            return self._busy("agent is busy; retry later")
        if declared > self.max_body_bytes:
            return self._too_big()
        if not self.bodies.take(declared):
            return self._busy(_BUFFERED_FULL)
        return None

    def _admit_more(self, extra: int) -> Reply | None:
        return None if self.bodies.take(extra) else self._busy(_BUFFERED_FULL)

    def _busy(self, why: str) -> Reply:
        self.metrics.rejected.labels("http").inc()
        return error_reply(503, why, {"Retry-After": str(self.retry_after_s)})

    def _too_big(self) -> Reply:
        self.metrics.bad_requests.labels("http").inc()
        limit_mb = self.max_body_bytes / (1 << 20)
        return error_reply(
            413, f"request body is over the {limit_mb:g} MiB limit (api.max_body_mb)", field_name="body"
        )

    async def _answer(self, name: str, version: str | None, body: bytes, headers: dict[str, str]) -> Reply:
        """One admitted V2 infer call: body and headers in, a Reply out (never raises)."""
        reply = await self.v2.answer(name, version, body, headers)
        if 400 <= reply.status < 500 and reply.status != 404:
            self.metrics.bad_requests.labels("http").inc()
        return reply
