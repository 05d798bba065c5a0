"""Start and stop the gRPC front end inside the REST app's event loop, so both share one
DataPlane (its batchers' queues live in this loop). With several workers each binds the same
port (gRPC sets SO_REUSEPORT) and the kernel spreads connections, as for REST."""

from __future__ import annotations

import logging
from collections.abc import Callable

import grpc

from edgecascade.cloud.dataplane import DataPlane
from edgecascade.cloud.grpc_api.service import Authenticator, InferenceService, certificate_identity
from edgecascade.cloud.metrics import CloudMetrics
from edgecascade.cloud.settings import ServerSettings
from edgecascade.shared.errors import ConfigError
from edgecascade.shared.v2.grpc import grpc_predict_v2_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)


def server_credentials(settings: ServerSettings) -> grpc.ServerCredentials | None:
    """TLS credentials from the same certificate settings as HTTPS; None for plain gRPC.

    gRPC's Python API verifies client certificates only when it requires them, so with a
    client CA the gRPC port accepts only callers with a valid client certificate."""
    if settings.tls_certfile is None or settings.tls_keyfile is None:
        return None
    try:
        pair = (settings.tls_keyfile.read_bytes(), settings.tls_certfile.read_bytes())
        client_ca = settings.tls_client_ca.read_bytes() if settings.tls_client_ca else None
    except OSError as exc:
        raise ConfigError(f"cannot read {exc.filename}: {exc.strerror}", key="tls") from None
    return grpc.ssl_server_credentials(
        [pair], root_certificates=client_ca, require_client_auth=client_ca is not None
    )


async def start_grpc(
    settings: ServerSettings, plane: Callable[[], DataPlane], auth: Authenticator, metrics: CloudMetrics
) -> grpc.aio.Server | None:
    """The started server on settings.grpc_port, or None when gRPC is off (no port set)."""
    if settings.grpc_port is None:
        return None
    limit = settings.grpc_max_message_bytes
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", limit),
            ("grpc.max_send_message_length", limit),
            # Workers share the port; a single process must own it (a port in use is an error).
            ("grpc.so_reuseport", 1 if settings.workers > 1 else 0),
        ]
    )
    credentials = server_credentials(settings)
    identify = certificate_identity if credentials is not None and settings.tls_client_ca else None
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(
        InferenceService(plane, auth, metrics, identify, limits=settings.request_limits()), server
    )
    address = f"{settings.host}:{settings.grpc_port}"
    try:
        if credentials is None:
            bound = server.add_insecure_port(address)
        else:
            bound = server.add_secure_port(address, credentials)
    except RuntimeError:  # grpcio raises where older releases returned 0
        bound = 0
    if bound == 0:
        raise ConfigError(f"cannot listen on {address} (in use?)", key="grpc_port")
    await server.start()
    log.info("V2 gRPC on %s%s", address, " (TLS)" if credentials else "")
    return server


async def stop_grpc(server: grpc.aio.Server | None, grace_s: float) -> None:
    """Refuse new calls, let in-flight ones finish for up to `grace_s`."""
    if server is not None:
        await server.stop(grace_s)
