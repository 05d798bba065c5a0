"""A real uvicorn server on a free loopback port whose app is only cloud.artifacts' routes,
run in a thread (optionally with TLS), with the route's request log."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import uvicorn
from starlette.applications import Starlette

from edgecascade.cloud.artifacts import ServedLog, artifact_routes
from edgecascade.tools.mqtt_broker import free_port


class ArtifactServer:
    def __init__(self, root: Path, *, certfile: Path | None = None, keyfile: Path | None = None) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.served = ServedLog()
        self.port = free_port()
        self.tls = certfile is not None
        config = uvicorn.Config(
            Starlette(routes=artifact_routes(root, served=self.served)),
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            lifespan="off",
            ws="none",
            ssl_certfile=str(certfile) if certfile else None,
            ssl_keyfile=str(keyfile) if keyfile else None,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="artifact-server", daemon=True)

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def start(self) -> ArtifactServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("artifact server did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(5)

    def __enter__(self) -> ArtifactServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
