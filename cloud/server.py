"""Run the cloud API: one process, or a uvicorn supervisor with N worker processes.

The first SIGTERM/SIGINT stops accepting connections and lets in-flight requests finish
(up to `graceful_timeout_s`), then models are unloaded; uvicorn forwards it to workers."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import ssl
import tempfile
from typing import Any

import uvicorn

from edgecascade.cloud.app import SETTINGS_ENV, create_app, make_authenticator
from edgecascade.cloud.repository import scan_repository
from edgecascade.cloud.settings import ServerSettings
from edgecascade.shared.errors import ConfigError

log = logging.getLogger(__name__)

#: uvicorn's HTTP protocol with a bound on request heads (an import path: workers load it).
BOUNDED_HTTP = "edgecascade.cloud.http_protocol:BoundedHttpProtocol"


def serve(settings: ServerSettings) -> None:
    """Serve until SIGTERM/SIGINT. Bad repositories and token files fail here, before binding."""
    scan_repository(settings.repository)
    make_authenticator(settings)
    if settings.grpc_port:
        _check_port_free(settings.host, settings.grpc_port, "grpc_port")
    common: dict[str, Any] = dict(
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=settings.graceful_timeout_s,
        lifespan="on",
        http=BOUNDED_HTTP,
    )
    common.update(tls_options(settings))
    log.info(
        "serving %s on %s://%s:%d with %d worker(s)%s",
        settings.repository,
        settings.scheme,
        settings.host,
        settings.port,
        settings.workers,
        " WITHOUT AUTHENTICATION" if settings.no_auth else "",
    )
    if settings.workers == 1:
        # uvicorn re-raises the SIGTERM it handled once it has shut down gracefully; with this
        # handler in place that ends in a clean exit 0 (what systemd expects), not death by signal.
        previous = signal.signal(signal.SIGTERM, _graceful_exit_done)
        try:
            uvicorn.Server(uvicorn.Config(create_app(settings), **common)).run()
        finally:
            signal.signal(signal.SIGTERM, previous)
        return
    # Workers are separate processes: metrics aggregate through files, settings through env.
    metrics_dir = tempfile.mkdtemp(prefix="edgecascade-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    os.environ[SETTINGS_ENV] = settings.public_json()
    try:
        uvicorn.run("edgecascade.cloud.app:app_from_env", factory=True, workers=settings.workers, **common)
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)


def tls_options(settings: ServerSettings) -> dict[str, Any]:
    """uvicorn's TLS options: HTTPS with the server certificate; with a client CA, certificates
    are asked for and verified (optional: a device may still use a token instead)."""
    if settings.tls_certfile is None:
        return {}
    for key in ("tls_certfile", "tls_keyfile", "tls_client_ca"):
        path = getattr(settings, key)
        if path is not None and not path.is_file():
            raise ConfigError("file not found", file=str(path), key=key)
    options: dict[str, Any] = {
        "ssl_certfile": str(settings.tls_certfile),
        "ssl_keyfile": str(settings.tls_keyfile),
    }
    if settings.tls_client_ca is not None:
        options.update(
            ssl_ca_certs=str(settings.tls_client_ca),
            ssl_cert_reqs=ssl.CERT_OPTIONAL,
            # The identity is looked up by the TCP peer; a forwarded-for header must not move it.
            proxy_headers=False,
            http="edgecascade.cloud.client_certs:CertificateHttpProtocol",
        )
    return options


def _check_port_free(host: str, port: int, key: str) -> None:
    """A taken port stops start-up here with its setting's name, not as a traceback from the
    workers' start-up."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is no conflict
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise ConfigError(f"cannot listen on {host}:{port} (in use?): {exc.strerror}", key=key) from None


def _graceful_exit_done(signum: int, frame: object) -> None:
    log.info("shut down after signal %d", signum)
