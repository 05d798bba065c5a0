"""The HTTP adapter of the cloud API (Starlette): it only translates between HTTP and
cloud.dataplane, and maps errors to status codes through cloud.http_errors."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from edgecascade.cloud.artifacts import artifact_routes
from edgecascade.cloud.auth import NoAuth, TokenAuthenticator, load_grants
from edgecascade.cloud.client_certs import certificate_identity
from edgecascade.cloud.dataplane import DataPlane, response_bytes
from edgecascade.cloud.grpc_api.server import start_grpc, stop_grpc
from edgecascade.cloud.http_errors import status_for
from edgecascade.cloud.idempotency import IdempotencyCache
from edgecascade.cloud.metrics import CloudMetrics
from edgecascade.cloud.models import ModelRegistry
from edgecascade.cloud.settings import ServerSettings
from edgecascade.shared.errors import (
    ConfigError,
    EdgecascadeError,
    NotFoundError,
    PayloadTooLargeError,
    ProtocolError,
    UnavailableError,
)
from edgecascade.shared.v2 import InferRequest, InferResponse, RequestLimits, answer_v2
from edgecascade.shared.v2.limits import BodyBudget

log = logging.getLogger(__name__)

#: Worker processes read their settings from here (set by cloud.server before they start).
SETTINGS_ENV = "EDGECASCADE_SERVE_SETTINGS"

Handler = Callable[[Request], Awaitable[Response]]


def make_authenticator(settings: ServerSettings) -> TokenAuthenticator | NoAuth:
    """Token checks per settings; refuses to start with no tokens unless --no-auth."""
    if settings.no_auth:
        return NoAuth()
    env = settings.tokens.get_secret_value() if settings.tokens else None
    grants = load_grants(settings.tokens_file, env)
    if not grants and settings.tls_client_ca is not None:
        return TokenAuthenticator([])  # client certificates only
    if not grants:
        raise ConfigError(
            "no device tokens: give --tokens-file or EDGECASCADE_SERVE__TOKENS, or --no-auth for a local demo",
            key="tokens",
        )
    return TokenAuthenticator(grants)


def create_app(settings: ServerSettings) -> Starlette:
    """The ASGI app. Models load in the lifespan start-up (before uvicorn accepts requests)."""
    api = _HttpApi(settings)
    return Starlette(routes=api.routes(), lifespan=api.lifespan)


class _HttpApi:
    """The routes of one app and what they share: the authenticator, the metrics, the limits and
    the data plane, which exists only between the lifespan's start-up and shutdown."""

    def __init__(self, settings: ServerSettings) -> None:
        self.settings = settings
        self.auth = make_authenticator(settings)
        self.metrics = CloudMetrics()
        self.limits = settings.request_limits()
        # 40 uploads of 15 MiB at once took a worker to 721 MiB before this bound.
        self.bodies = BodyBudget(int(settings.max_buffered_mb * (1 << 20)), self.limits.max_body_bytes)
        self._plane: DataPlane | None = None

    def plane(self) -> DataPlane:
        if self._plane is None:
            raise RuntimeError("the cloud API has not started (lifespan start-up did not run)")
        return self._plane

    @asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        settings = self.settings
        registry = ModelRegistry.from_repository(
            settings.repository, self.metrics.observe_batch, settings.debug_delay_ms / 1000.0
        )
        cache: IdempotencyCache[InferResponse] = IdempotencyCache(
            settings.idempotency_max_entries,
            settings.idempotency_ttl_s,
            max_bytes=int(settings.idempotency_max_mb * (1 << 20)),
            size_of=response_bytes,
        )
        self._plane = DataPlane(
            registry, self.metrics, cache, convert_datatypes=settings.allow_datatype_conversion
        )
        grpc_server = await start_grpc(settings, self.plane, self.auth, self.metrics)
        log.info("cloud API ready (pid %d): models %s", os.getpid(), sorted(registry.entries))
        try:
            yield
        finally:
            await stop_grpc(grpc_server, settings.graceful_timeout_s)
            await self.plane().close()
            log.info("cloud API stopped (pid %d)", os.getpid())

    def routes(self) -> list[Route]:
        endpoint = self._endpoint
        routes = [
            Route("/v2", endpoint("server_metadata", self.server_metadata)),
            Route("/v2/health/live", endpoint("live", self.live)),
            Route("/v2/health/ready", endpoint("ready", self.ready)),
            Route("/metrics", endpoint("metrics", self.prometheus)),
        ]
        for prefix in ("/v2/models/{name}", "/v2/models/{name}/versions/{version}"):
            routes += [
                Route(prefix, endpoint("model_metadata", self.model_metadata)),
                Route(prefix + "/ready", endpoint("model_ready", self.model_ready)),
                Route(prefix + "/infer", endpoint("infer", self.infer), methods=["POST"]),
            ]
        if self.settings.artifacts_dir is not None:
            # The HTTP(S) route for model updates: signed artifacts with range requests. No token:
            # integrity comes from the Ed25519-signed manifest, and devices resume with Range.
            routes += artifact_routes(self.settings.artifacts_dir)
        return routes

    def _endpoint(self, name: str, fn: Callable[[Request, DataPlane], Awaitable[Response]]) -> Handler:
        async def handle(request: Request) -> Response:
            self.metrics.requests.labels(name).inc()
            try:
                return await fn(request, self.plane())
            except EdgecascadeError as exc:
                return _error(self.metrics, exc, str(exc))
            except Exception as exc:  # a bug: log it with its traceback, answer 500
                log.exception("%s %s failed", request.method, request.url.path)
                return _error(self.metrics, exc, "internal server error")

        return handle

    def _caller_of(self, request: Request, model: str) -> str:
        """A verified client certificate's device, else the bearer token's."""
        if self.settings.tls_client_ca is not None:
            device = certificate_identity(request.scope)
            if device is not None:
                return self.auth.authorize(device, model)
        return self.auth.authenticate(request.headers.get("authorization"), model)

    async def server_metadata(self, request: Request, plane: DataPlane) -> Response:
        return JSONResponse(plane.server_metadata().model_dump())

    async def live(self, request: Request, plane: DataPlane) -> Response:
        return _status(plane.live())

    async def ready(self, request: Request, plane: DataPlane) -> Response:
        return _status(plane.ready())

    async def model_metadata(self, request: Request, plane: DataPlane) -> Response:
        name = request.path_params["name"]
        self._caller_of(request, name)
        return JSONResponse(plane.model_metadata(name, _version_of(request)).model_dump(exclude_none=True))

    async def model_ready(self, request: Request, plane: DataPlane) -> Response:
        name, version = request.path_params["name"], _version_of(request)
        try:
            return _status(plane.model_ready(name, version))
        except NotFoundError:
            # No token is needed here (load balancers probe it): do not list the served models.
            what = f"model {name[:100]!r}" + (f" version {version[:40]!r}" if version else "")
            raise NotFoundError(f"{what} is not served here") from None

    async def infer(self, request: Request, plane: DataPlane) -> Response:
        name = request.path_params["name"]
        version = _version_of(request)
        caller = self._caller_of(request, name)
        plane.check_model(name, version)
        body, held = await read_body(request, self.limits, self.bodies)

        async def serve(decoded: InferRequest) -> InferResponse:
            return await plane.infer(name, version, decoded, caller=caller)

        try:
            reply = await answer_v2(body, request.headers, serve, limits=self.limits)
        finally:
            self.bodies.give(held)
        if reply.status >= 400:
            self.metrics.errors.labels(str(reply.status)).inc()
        return Response(reply.body, status_code=reply.status, headers=reply.headers)

    async def prometheus(self, request: Request, plane: DataPlane) -> Response:
        return Response(self.metrics.render(), media_type="text/plain; version=0.0.4")


def _version_of(request: Request) -> str | None:
    return request.path_params.get("version")


def app_from_env() -> Starlette:
    """Factory for uvicorn worker processes (`--workers N`): settings come from SETTINGS_ENV."""
    from edgecascade.shared.logs import configure_logging

    settings = ServerSettings(**json.loads(os.environ[SETTINGS_ENV]))
    configure_logging(settings.log_level)
    return create_app(settings)


async def read_body(request: Request, limits: RequestLimits, budget: BodyBudget) -> tuple[bytes, int]:
    """The request body and the bytes of `budget` it holds (the caller gives them back once
    the request is answered). Refused with PayloadTooLargeError (413) once it passes the
    limit: by Content-Length before a byte is read, else as it streams in; never held whole
    when too big. Refused with UnavailableError (503) when the worker already holds its budget
    of bodies: by Content-Length before a byte is read, else as it streams in. uvicorn reads
    and drops what the client still sends after the answer, so the connection stays usable and
    an ordinary client, which sends its whole body first, reads the 413 or 503."""
    limit = limits.max_body_bytes
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise ProtocolError(f"not an integer: {declared[:40]!r}", field="Content-Length") from None
        if size > limit:
            raise PayloadTooLargeError(
                f"request body is {size} bytes; the limit is {limit} (max_body_mb)", field="body"
            )
        _take(budget, size)
        held = size
    else:
        held = 0
    try:
        parts: list[bytes] = []
        received = 0
        async for chunk in request.stream():
            received += len(chunk)
            if received > limit:
                raise PayloadTooLargeError(
                    f"request body is over the limit of {limit} bytes (max_body_mb)", field="body"
                )
            if received > held:  # a chunked body takes its share as it grows
                _take(budget, received - held)
                held = received
            parts.append(chunk)
    except BaseException:
        budget.give(held)
        raise
    return b"".join(parts), held


def _take(budget: BodyBudget, n: int) -> None:
    if not budget.take(n):
        raise UnavailableError(
            "the server is busy: request bodies in memory are at their limit (max_buffered_mb); retry later",
            retry_after=1,
        )


def _status(ok: bool) -> Response:
    return Response(status_code=200 if ok else 503)


def _error(metrics: CloudMetrics, exc: BaseException, message: str) -> Response:
    status, headers = status_for(exc)
    metrics.errors.labels(str(status)).inc()
    if status >= 500:
        log.warning("answering %d: %s", status, message)
    body: dict[str, str] = {"error": message}
    field = getattr(exc, "field", None)
    if isinstance(field, str):
        body["field"] = field
    return JSONResponse(body, status_code=status, headers=headers)
