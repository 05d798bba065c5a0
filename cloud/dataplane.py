"""The cloud's Open Inference Protocol logic, free of HTTP: the adapter in cloud/app.py only
translates requests to these calls and their results or errors back (MLServer's split)."""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import time
from dataclasses import replace

import numpy as np

from edgecascade.cloud.idempotency import IdempotencyCache
from edgecascade.cloud.metrics import CloudMetrics
from edgecascade.cloud.models import ModelRegistry
from edgecascade.shared.errors import ProtocolError, UnavailableError
from edgecascade.shared.features.image import DEFAULT_MAX_PIXELS
from edgecascade.shared.v2 import (
    EXTENSIONS,
    IDEMPOTENCY_KEY,
    RAW_INPUT_KEY,
    InferRequest,
    InferResponse,
    ModelMetadata,
    ServerMetadata,
    datatype_for_dtype,
)
from edgecascade.shared.v2.answering import check_output_names
from edgecascade.shared.v2.checks import check_datatypes, check_finite
from edgecascade.shared.version import __version__

log = logging.getLogger(__name__)

#: The server setting that allows datatype conversion, named in the 400 that refuses it.
_CONVERT_SETTING = "allow_datatype_conversion (cloud serve --allow-datatype-conversion)"


#: Bytes of answers kept for idempotent replay when the caller gives no cache (the setting's default).
DEFAULT_REPLAY_BYTES = 256 << 20


def response_bytes(response: InferResponse) -> int:
    """What an answer kept for replay takes: its output arrays' bytes."""
    return sum(int(np.asarray(arr).nbytes) for arr in response.outputs.values())


class DataPlane:
    """Health, metadata and inference over a loaded ModelRegistry."""

    def __init__(
        self,
        registry: ModelRegistry,
        metrics: CloudMetrics,
        idempotency: IdempotencyCache[InferResponse] | None = None,
        *,
        convert_datatypes: bool = False,
        max_image_pixels: int = DEFAULT_MAX_PIXELS,
    ) -> None:
        self.registry = registry
        self.max_image_pixels = max_image_pixels
        self.convert_datatypes = convert_datatypes
        self.metrics = metrics
        # `is None`, not `or`: an empty cache is falsy (it has a length), and the server's own,
        # made from its settings, was replaced by this default.
        if idempotency is None:
            idempotency = IdempotencyCache(max_bytes=DEFAULT_REPLAY_BYTES, size_of=response_bytes)
        self.idempotency: IdempotencyCache[InferResponse] = idempotency
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
        self.idempotency.finish(cache_key, future, response)
        return response

    async def _compute(self, name: str, version: str | None, request: InferRequest) -> InferResponse:
        start = time.perf_counter()
        model = self.registry.get(name, version)
        expected = {t.name: datatype_for_dtype(t.dtype) for t in model.signature.inputs}
        inputs = model.prepare_images(request.inputs, self.max_image_pixels)
        inputs = check_datatypes(inputs, expected, convert=self.convert_datatypes, setting=_CONVERT_SETTING)
        check_finite(inputs)
        inputs = model.check_inputs(inputs)
        wanted = check_output_names(request, model.output_names, name)
        self._read_raw_input(name, request)
        outputs = await model.predict(inputs)
        if any(n not in outputs for n in wanted):  # decoded detections, asked for by name or as "all"
            outputs = {**outputs, **model.decoded(outputs)}
        self.metrics.inferences.labels(name).inc()
        self.metrics.latency.labels(name).observe(time.perf_counter() - start)
        return InferResponse(
            model_name=name,
            model_version=model.version,
            id=request.id,
            outputs={n: np.asarray(outputs[n]) for n in wanted},
        )

    def _read_raw_input(self, name: str, request: InferRequest) -> None:
        """A device whose profile sets cloud.send_raw_input sends its raw input (for example the
        image before encoding) as parameter raw_input_b64: checked and counted here; the model
        answers from the encoded features."""
        raw = request.parameters.get(RAW_INPUT_KEY)
        if raw is None:
            return
        if not isinstance(raw, str):
            raise ProtocolError("must be a base64 string", field=f"parameters.{RAW_INPUT_KEY}")
        try:
            size = len(base64.b64decode(raw, validate=True))
        except (binascii.Error, ValueError):
            raise ProtocolError("is not valid base64", field=f"parameters.{RAW_INPUT_KEY}") from None
        self.metrics.raw_inputs.labels(name).inc()
        self.metrics.raw_input_bytes.labels(name).inc(size)

    async def close(self) -> None:
        """Refuse new work, then stop batchers and free the models."""
        self._ready = False
        await self.registry.close()
