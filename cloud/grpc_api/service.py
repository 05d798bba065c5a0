"""GRPCInferenceService over the DataPlane: the six calls of the Open Inference Protocol.

Tokens come from the `authorization: Bearer <token>` metadata entry and are checked exactly as
REST checks the header (metadata and infer need one; health does not); with client-certificate
authentication a verified certificate's common name is the caller instead."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

import grpc

from edgecascade.cloud.dataplane import DataPlane
from edgecascade.cloud.grpc_api.status import grpc_status_for
from edgecascade.cloud.metrics import CloudMetrics
from edgecascade.shared.errors import EdgecascadeError
from edgecascade.shared.v2.grpc import grpc_predict_v2_pb2 as pb
from edgecascade.shared.v2.grpc import grpc_predict_v2_pb2_grpc as pb_grpc
from edgecascade.shared.v2.grpc.convert import (
    model_metadata_to_proto,
    request_from_proto,
    response_to_proto,
    server_metadata_to_proto,
)
from edgecascade.shared.v2.limits import DEFAULT_LIMITS, RequestLimits

log = logging.getLogger(__name__)

_R = TypeVar("_R")


class Authenticator(Protocol):
    def authenticate(self, authorization: str | None, model: str | None = None) -> str: ...

    def authorize(self, device_id: str, model: str | None = None) -> str: ...


class Identify(Protocol):
    """The caller's device id from a verified client certificate, or None (then a token is needed)."""

    def __call__(self, context: grpc.aio.ServicerContext) -> str | None: ...


def certificate_identity(context: grpc.aio.ServicerContext) -> str | None:
    """The common name of a client certificate gRPC verified against the client CA."""
    auth = context.auth_context()
    names = auth.get("x509_common_name") or []
    return names[0].decode("utf-8", errors="replace") if names else None


class InferenceService(pb_grpc.GRPCInferenceServiceServicer):
    def __init__(
        self,
        plane: Callable[[], DataPlane],
        auth: Authenticator,
        metrics: CloudMetrics,
        identify: Identify | None = None,
        *,
        limits: RequestLimits = DEFAULT_LIMITS,
    ) -> None:
        """`limits`: the bounds REST applies (cloud serve --max-tensor-elements, ...)."""
        self._plane = plane
        self._limits = limits
        self._auth = auth
        self._metrics = metrics
        self._identify = identify

    async def _call(
        self, endpoint: str, context: grpc.aio.ServicerContext, fn: Callable[[DataPlane], Awaitable[_R]]
    ) -> _R:
        self._metrics.requests.labels(f"grpc_{endpoint}").inc()
        try:
            return await fn(self._plane())
        except EdgecascadeError as exc:
            code, http_status = grpc_status_for(exc)
            message = str(exc)
        except Exception:  # a bug: logged with its traceback, answered INTERNAL
            log.exception("gRPC %s failed", endpoint)
            code, http_status, message = grpc.StatusCode.INTERNAL, 500, "internal server error"
        self._metrics.errors.labels(str(http_status)).inc()
        if http_status >= 500:
            log.warning("answering gRPC %s: %s", code.name, message)
        await context.abort(code, message)
        raise AssertionError("context.abort returns only by raising")  # pragma: no cover

    def _caller(self, context: grpc.aio.ServicerContext, model: str) -> str:
        if self._identify is not None:
            device = self._identify(context)
            if device is not None:
                return self._auth.authorize(device, model)
        metadata: Any = context.invocation_metadata() or ()
        authorization = next((v for k, v in metadata if k == "authorization"), None)
        if isinstance(authorization, bytes):
            authorization = authorization.decode("latin-1")
        return self._auth.authenticate(authorization, model)

    async def ServerLive(self, request: pb.ServerLiveRequest, context: Any) -> pb.ServerLiveResponse:
        async def run(plane: DataPlane) -> pb.ServerLiveResponse:
            return pb.ServerLiveResponse(live=plane.live())

        return await self._call("live", context, run)

    async def ServerReady(self, request: pb.ServerReadyRequest, context: Any) -> pb.ServerReadyResponse:
        async def run(plane: DataPlane) -> pb.ServerReadyResponse:
            return pb.ServerReadyResponse(ready=plane.ready())

        return await self._call("ready", context, run)

    async def ModelReady(self, request: pb.ModelReadyRequest, context: Any) -> pb.ModelReadyResponse:
        async def run(plane: DataPlane) -> pb.ModelReadyResponse:
            return pb.ModelReadyResponse(ready=plane.model_ready(request.name, request.version or None))

        return await self._call("model_ready", context, run)

    async def ServerMetadata(
        self, request: pb.ServerMetadataRequest, context: Any
    ) -> pb.ServerMetadataResponse:
        async def run(plane: DataPlane) -> pb.ServerMetadataResponse:
            return server_metadata_to_proto(plane.server_metadata())

        return await self._call("server_metadata", context, run)

    async def ModelMetadata(self, request: pb.ModelMetadataRequest, context: Any) -> pb.ModelMetadataResponse:
        async def run(plane: DataPlane) -> pb.ModelMetadataResponse:
            self._caller(context, request.name)
            return model_metadata_to_proto(plane.model_metadata(request.name, request.version or None))

        return await self._call("model_metadata", context, run)

    async def ModelInfer(self, request: pb.ModelInferRequest, context: Any) -> pb.ModelInferResponse:
        async def run(plane: DataPlane) -> pb.ModelInferResponse:
            name, version = request.model_name, request.model_version or None
            caller = self._caller(context, name)
            plane.check_model(name, version)
            answer = await plane.infer(
                name, version, request_from_proto(request, self._limits), caller=caller
            )
            return response_to_proto(answer)

        return await self._call("infer", context, run)
