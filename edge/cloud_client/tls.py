"""The device's TLS settings for every HTTPS or gRPC-over-TLS connection it makes to the cloud:
the escalation client and the update downloader's HTTP route take them from here, so one CA
file in the profile verifies both."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from edgecascade.shared.errors import ConfigError

if TYPE_CHECKING:
    import grpc

    from edgecascade.edge.config.cloud import CloudSection
    from edgecascade.edge.config.profile import DeviceProfile


@dataclass(frozen=True, slots=True)
class ClientTls:
    """`ca_file`: CA certificates that sign the server (None: the system's CAs). `cert_file` and
    `key_file`: this device's client certificate, for servers that authenticate by certificate."""

    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None

    @property
    def verify(self) -> bool | str:
        """requests' `verify=` (pass it per request: a session-level one loses to REQUESTS_CA_BUNDLE)."""
        return str(self.ca_file) if self.ca_file is not None else True

    @property
    def cert(self) -> tuple[str, str] | None:
        """requests' `cert=`."""
        if self.cert_file is None or self.key_file is None:
            return None
        return (str(self.cert_file), str(self.key_file))

    def grpc_credentials(self) -> grpc.ChannelCredentials:
        import grpc

        def read(path: Path | None, key: str) -> bytes | None:
            if path is None:
                return None
            try:
                return path.read_bytes()
            except OSError as exc:
                raise ConfigError(f"cannot read {path}: {exc.strerror}", key=key) from None

        return grpc.ssl_channel_credentials(
            root_certificates=read(self.ca_file, "cloud.ca_file"),
            private_key=read(self.key_file, "cloud.client_key"),
            certificate_chain=read(self.cert_file, "cloud.client_cert"),
        )


def cloud_tls(cloud: CloudSection) -> ClientTls:
    """TLS for escalations to [cloud] url."""
    return ClientTls(cloud.ca_file, cloud.client_cert, cloud.client_key)


def artifact_tls(profile: DeviceProfile) -> ClientTls:
    """TLS for the update route's artifact server: [updates] http_ca if set, else [cloud] ca_file
    (the artifact route is usually the cloud API's own /artifacts). No client certificate: the
    route needs none, the signed manifest vouches for the bytes."""
    return ClientTls(profile.updates.http_ca or profile.cloud.ca_file)
