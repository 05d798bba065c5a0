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
from edgecascade.cloud.dataplane import DataPlane, binary_outputs_for
from edgecascade.cloud.http_errors import status_for
from edgecascade.cloud.idempotency import IdempotencyCache
from edgecascade.cloud.metrics import CloudMetrics
from edgecascade.cloud.models import ModelRegistry
from edgecascade.cloud.settings import ServerSettings
from edgecascade.shared.errors import ConfigError, EdgecascadeError
from edgecascade.shared.v2 import decode_infer_request, encode_infer_response

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
    if not grants:
        raise ConfigError(
            "no device tokens: give --tokens-file or EDGECASCADE_SERVE__TOKENS, or --no-auth for a local demo",
            key="tokens",
        )
    return TokenAuthenticator(grants)


def create_app(settings: ServerSettings) -> Starlette:
    """The ASGI app. Models load in the lifespan start-up (before uvicorn accepts requests)."""
    auth = make_authenticator(settings)
    metrics = CloudMetrics()
    state: dict[str, DataPlane] = {}

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        registry = ModelRegistry.from_repository(
            settings.repository, metrics.observe_batch, settings.debug_delay_ms / 1000.0
        )
        cache: IdempotencyCache = IdempotencyCache(
            settings.idempotency_max_entries, settings.idempotency_ttl_s
        )
        state["plane"] = DataPlane(registry, metrics, cache)
        log.info("cloud API ready (pid %d): models %s", os.getpid(), sorted(registry.entries))
        try:
            yield
        finally:
            await state["plane"].close()
            log.info("cloud API stopped (pid %d)", os.getpid())

    def endpoint(name: str, fn: Callable[[Request, DataPlane], Awaitable[Response]]) -> Handler:
        async def handle(request: Request) -> Response:
            metrics.requests.labels(name).inc()
            try:
                return await fn(request, state["plane"])
            except EdgecascadeError as exc:
                return _error(metrics, exc, str(exc))
            except Exception as exc:  # a bug: log it with its traceback, answer 500
                log.exception("%s %s failed", request.method, request.url.path)
                return _error(metrics, exc, "internal server error")

        return handle

    def version_of(request: Request) -> str | None:
        return request.path_params.get("version")

    async def server_metadata(request: Request, plane: DataPlane) -> Response:
        return JSONResponse(plane.server_metadata().model_dump())

    async def live(request: Request, plane: DataPlane) -> Response:
        return _status(plane.live())

    async def ready(request: Request, plane: DataPlane) -> Response:
        return _status(plane.ready())

    async def model_metadata(request: Request, plane: DataPlane) -> Response:
        name = request.path_params["name"]
        auth.authenticate(request.headers.get("authorization"), name)
        return JSONResponse(plane.model_metadata(name, version_of(request)).model_dump(exclude_none=True))

    async def model_ready(request: Request, plane: DataPlane) -> Response:
        return _status(plane.model_ready(request.path_params["name"], version_of(request)))

    async def infer(request: Request, plane: DataPlane) -> Response:
        name = request.path_params["name"]
        caller = auth.authenticate(request.headers.get("authorization"), name)
        plane.check_model(name, version_of(request))
        decoded = decode_infer_request(await request.body(), request.headers)
        answer = await plane.infer(name, version_of(request), decoded, caller=caller)
        body, headers = encode_infer_response(
            answer.model_name,
            answer.model_version,
            answer.id,
            answer.outputs,
            binary_outputs=binary_outputs_for(decoded),
            parameters=answer.parameters,
        )
        return Response(body, headers=headers)

    async def prometheus(request: Request, plane: DataPlane) -> Response:
        return Response(metrics.render(), media_type="text/plain; version=0.0.4")

    routes = [
        Route("/v2", endpoint("server_metadata", server_metadata)),
        Route("/v2/health/live", endpoint("live", live)),
        Route("/v2/health/ready", endpoint("ready", ready)),
        Route("/metrics", endpoint("metrics", prometheus)),
    ]
    for prefix in ("/v2/models/{name}", "/v2/models/{name}/versions/{version}"):
        routes += [
            Route(prefix, endpoint("model_metadata", model_metadata)),
            Route(prefix + "/ready", endpoint("model_ready", model_ready)),
            Route(prefix + "/infer", endpoint("infer", infer), methods=["POST"]),
        ]
    if settings.artifacts_dir is not None:
        # The HTTP(S) route for model updates: signed artifacts with range requests. No token:
        # integrity comes from the Ed25519-signed manifest, and devices resume with Range.
        routes += artifact_routes(settings.artifacts_dir)
    return Starlette(routes=routes, lifespan=lifespan)


def app_from_env() -> Starlette:
    """Factory for uvicorn worker processes (`--workers N`): settings come from SETTINGS_ENV."""
    from edgecascade.logs import configure_logging

    settings = ServerSettings(**json.loads(os.environ[SETTINGS_ENV]))
    configure_logging(settings.log_level)
    return create_app(settings)


def _status(ok: bool) -> Response:
    return Response(status_code=200 if ok else 503)


def _error(metrics: CloudMetrics, exc: BaseException, message: str) -> Response:
    status, headers = status_for(exc)
    metrics.errors.labels(str(status)).inc()
    if status >= 500:
        log.warning("answering %d: %s", status, message)
    return JSONResponse({"error": message}, status_code=status, headers=headers)
