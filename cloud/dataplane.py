"""The cloud's Open Inference Protocol logic, free of HTTP: the adapter in cloud/app.py only
translates requests to these calls and their results or errors back (MLServer's split)."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import replace

import numpy as np

from edgecascade.cloud.idempotency import IdempotencyCache
from edgecascade.cloud.metrics import CloudMetrics
from edgecascade.cloud.models import ModelRegistry
from edgecascade.shared.errors import ProtocolError, UnavailableError
from edgecascade.shared.v2 import EXTENSIONS, InferRequest, InferResponse, ModelMetadata, ServerMetadata
from edgecascade.shared.version import __version__

log = logging.getLogger(__name__)

IDEMPOTENCY_KEY = "idempotency_key"


class DataPlane:
    """Health, metadata and inference over a loaded ModelRegistry."""

    def __init__(
        self,
        registry: ModelRegistry,
        metrics: CloudMetrics,
        idempotency: IdempotencyCache[InferResponse] | None = None,
    ) -> None:
        self.registry = registry
        self.metrics = metrics
        self.idempotency: IdempotencyCache[InferResponse] = idempotency or IdempotencyCache()
        self._ready = True

    def server_metadata(self) -> ServerMetadata:
        return ServerMetadata(name="edgecascade", version=__version__, extensions=list(EXTENSIONS))

    def live(self) -> bool:
        return True

    def ready(self) -> bool:
        """True once models are loaded, False from the start of shutdown."""
        return self._ready

    def model_metadata(self, name: str, version: str | None = None) -> ModelMetadata:
        return self.registry.metadata(name, version)

    def check_model(self, name: str, version: str | None = None) -> None:
        """Raise NotFoundError for an unknown model or version (before a body is decoded)."""
        self.registry.get(name, version)

    def model_ready(self, name: str, version: str | None = None) -> bool:
        self.registry.get(name, version)  # NotFoundError for an unknown model
        return self._ready

    async def infer(
        self, name: str, version: str | None, request: InferRequest, *, caller: str = "anonymous"
    ) -> InferResponse:
        """Answer one request. Raises NotFoundError, ProtocolError/InputError (the caller's
        fault), UnavailableError (overloaded, shutting down) or ModelError."""
        if not self._ready:
            raise UnavailableError("server is shutting down", retry_after=1.0)
        model = self.registry.get(name, version)
        key = request.parameters.get(IDEMPOTENCY_KEY)
        if key is None:
            return await self._compute(name, version, request)
        if not isinstance(key, str) or not key:
            raise ProtocolError("must be a non-empty string", field=f"parameters.{IDEMPOTENCY_KEY}")
        cache_key = (caller, name, model.version, key)
        earlier = self.idempotency.get(cache_key)
        if earlier is not None:
            self.metrics.replays.labels(name).inc()
            log.debug("replaying idempotent request for model %s", name)
            return replace(await asyncio.shield(earlier), id=request.id)
        future = self.idempotency.begin(cache_key)
        try:
            response = await self._compute(name, version, request)
        except BaseException as exc:
            self.idempotency.fail(cache_key, future, exc)
            raise
        future.set_result(response)
        return response

    async def _compute(self, name: str, version: str | None, request: InferRequest) -> InferResponse:
        start = time.perf_counter()
        model = self.registry.get(name, version)
        inputs = model.check_inputs(request.inputs)
        wanted = model.output_names
        if request.outputs is not None:
            for i, out in enumerate(request.outputs):
                if out.name not in model.output_names:
                    raise ProtocolError(
                        f"model {name} has no output {out.name!r}; outputs: {model.output_names}",
                        field=f"outputs[{i}].name",
                    )
            wanted = [out.name for out in request.outputs]
        outputs = await model.predict(inputs)
        self.metrics.inferences.labels(name).inc()
        self.metrics.latency.labels(name).observe(time.perf_counter() - start)
        return InferResponse(
            model_name=name,
            model_version=model.version,
            id=request.id,
            outputs={n: np.asarray(outputs[n]) for n in wanted},
        )

    async def close(self) -> None:
        """Refuse new work, then stop batchers and free the models."""
        self._ready = False
        await self.registry.close()


def binary_outputs_for(request: InferRequest) -> set[str] | bool:
    """Which outputs go back raw: those asked for with binary_data, or all per binary_data_output."""
    if request.outputs is None:
        return request.binary_output_default
    return {out.name for out in request.outputs if out.binary}
