"""Run an ASGI app with uvicorn in a background thread, as a Service."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

import uvicorn

from edgecascade.shared.errors import UnavailableError

log = logging.getLogger(__name__)


class HttpServer:
    name = "http-api"

    def __init__(self, app: Any, host: str, port: int, unix_socket: Path | None = None) -> None:
        self.config = uvicorn.Config(
            app,
            host=host,
            port=port,
            uds=str(unix_socket) if unix_socket else None,
            lifespan="off",
            ws="none",  # V2 is plain HTTP: no websockets library loaded
            # uvicorn's loggers propagate to the root handler: JSON lines under --log-json.
            log_config=None,
            access_log=False,
            # Applications on the device call it directly: no proxy to trust X-Forwarded-* from
            # (and no middleware on every request), no Server header to advertise.
            proxy_headers=False,
            server_header=False,
            log_level="warning",
            timeout_graceful_shutdown=5,
        )
        self.server = uvicorn.Server(self.config)
        self._thread: threading.Thread | None = None
        self.address = str(unix_socket) if unix_socket else f"http://{host}:{port}"

    def start(self) -> None:
        # Outside the main thread uvicorn installs no signal handlers: the daemon owns them.
        self._thread = threading.Thread(target=self.server.run, name="http-api", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise UnavailableError(f"local API could not listen on {self.address} (address in use?)")
            time.sleep(0.01)
        if self.config.uds is None and self.server.servers:
            port = self.server.servers[0].sockets[0].getsockname()[1]
            self.address = f"http://{self.config.host}:{port}"
        log.info("local API listening on %s", self.address)

    def stop(self, timeout_s: float) -> None:
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout_s)
