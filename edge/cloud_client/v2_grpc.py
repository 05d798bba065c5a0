"""The device's client for a cloud speaking the Open Inference Protocol over gRPC
(`cloud.url = "grpc://host:port"`, or `grpcs://` for TLS verified against cloud.ca_file): ours,
Triton, KServe and MLServer serve GRPCInferenceService. Tensors go as raw_input_contents; the
model's metadata gives the input's name and datatype once per server. Retries, deadline and
breaker: edge/cloud_client/retrying.py."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import grpc
import numpy as np

from edgecascade.edge.cloud_client.negotiation import ServerFacts, negotiate
from edgecascade.edge.cloud_client.retrying import Retryable, RetryingCloudClient, Timeout, request_parameters
from edgecascade.edge.cloud_client.tls import cloud_tls
from edgecascade.edge.config.cloud import CloudSection
from edgecascade.shared.errors import (
    CloudAuthError,
    CloudBadResponseError,
    CloudError,
    CloudUnreachableError,
    ConfigError,
    ProtocolError,
)
from edgecascade.shared.v2 import InferResponse
from edgecascade.shared.v2.grpc import grpc_predict_v2_pb2 as pb
from edgecascade.shared.v2.grpc import grpc_predict_v2_pb2_grpc as pb_grpc
from edgecascade.shared.v2.grpc.convert import (
    model_metadata_from_proto,
    request_to_proto,
    response_from_proto,
    server_metadata_from_proto,
)

log = logging.getLogger(__name__)

#: Worth another try: the server is restarting, overloaded or slow.
_RETRYABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.ABORTED}
_AUTH = {grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED}
MAX_MESSAGE_BYTES = 16 << 20


class V2GrpcCloudClient(RetryingCloudClient):
    def __init__(self, config: CloudSection, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        parts = urlsplit(self.url)
        if not parts.hostname or parts.port is None or parts.path not in ("", "/"):
            raise ConfigError(f"expected {parts.scheme}://host:port, got {self.url!r}", key="cloud.url")
        target = f"{parts.hostname}:{parts.port}"
        options = [
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            # Our retries, deadline and breaker decide; the channel only reconnects, and soon
            # (gRPC's default backoff keeps a restarted cloud unreached for up to 2 minutes).
            ("grpc.enable_retries", 0),
            ("grpc.initial_reconnect_backoff_ms", 100),
            ("grpc.min_reconnect_backoff_ms", 100),
            ("grpc.max_reconnect_backoff_ms", int(config.breaker_reset_s * 1000)),
        ]
        if parts.scheme == "grpcs":
            self.channel = grpc.secure_channel(target, cloud_tls(config).grpc_credentials(), options=options)
        else:
            self.channel = grpc.insecure_channel(target, options=options)
        self.stub = pb_grpc.GRPCInferenceServiceStub(self.channel)
        metadata = []
        if self.token:
            metadata.append(("authorization", f"Bearer {self.token}"))
        if self.device_id:
            metadata.append(("x-edgecascade-device", self.device_id))
        self.metadata = tuple(metadata)

    def _rpc(self, method: Any, request: Any, timeout: Timeout) -> Any:
        try:
            return method(request, timeout=sum(timeout), metadata=self.metadata)
        except grpc.RpcError as exc:
            raise _cloud_error(exc) from None

    def _negotiate(self, timeout: Timeout) -> ServerFacts:
        server = server_metadata_from_proto(
            self._rpc(self.stub.ServerMetadata, pb.ServerMetadataRequest(), timeout)
        )
        request = pb.ModelMetadataRequest(name=self.config.model, version=self.config.model_version or "")
        model = model_metadata_from_proto(self._rpc(self.stub.ModelMetadata, request, timeout))
        # Raw tensor contents are part of the gRPC protocol itself, not an extension.
        facts = negotiate(server, model, input_name=self.input_name, allow_binary=False)
        return ServerFacts(facts.server, True, facts.input_name, facts.datatype)

    def _exchange(
        self,
        inputs: Callable[[ServerFacts], dict[str, np.ndarray]],
        key: str,
        outputs: list[str] | None,
        raw_input: bytes | None,
        timeout: Timeout,
    ) -> InferResponse:
        facts = self._server_facts(timeout)
        request = request_to_proto(
            self.config.model,
            self.config.model_version,
            inputs(facts),
            request_id=key,
            parameters=request_parameters(key, raw_input),
            outputs=outputs,
        )
        reply = self._rpc(self.stub.ModelInfer, request, timeout)
        try:
            return response_from_proto(reply)
        except (ProtocolError, ValueError) as exc:
            raise CloudBadResponseError(f"invalid V2 response: {exc}") from None

    def close(self) -> None:
        self.channel.close()


def _cloud_error(exc: grpc.RpcError) -> CloudError:
    code = exc.code()
    detail = f"{code.name} {str(exc.details() or '')[:200]}"
    if code in _AUTH:
        return CloudAuthError(detail)
    if code in _RETRYABLE:
        return Retryable(detail)
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return CloudUnreachableError(f"timed out ({detail})")
    return CloudBadResponseError(detail)
