"""Which client speaks to which cloud URL, by scheme. Clients are imported only when chosen, so a
device that escalates over HTTP needs no grpcio."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from edgecascade.shared.errors import ConfigError

if TYPE_CHECKING:
    from edgecascade.edge.cloud_client.base import CloudClient
    from edgecascade.edge.config.profile import DeviceProfile

#: URL scheme -> "module:Class" of a client built as `Class(cloud_section, device_id=...)`.
CLIENTS: dict[str, str] = {
    "http": "edgecascade.edge.cloud_client.v2_http:V2HttpCloudClient",
    "https": "edgecascade.edge.cloud_client.v2_http:V2HttpCloudClient",
    "grpc": "edgecascade.edge.cloud_client.v2_grpc:V2GrpcCloudClient",
    "grpcs": "edgecascade.edge.cloud_client.v2_grpc:V2GrpcCloudClient",
}
SCHEMES = tuple(CLIENTS)


def client_class(url: str) -> type[CloudClient]:
    scheme = urlsplit(url).scheme
    if scheme not in CLIENTS:
        raise ConfigError(f"no cloud client for {scheme}://; known: {list(SCHEMES)}", key="cloud.url")
    module_name, cls_name = CLIENTS[scheme].split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise ConfigError(
            f"{scheme}:// needs the {exc.name} package (pip install 'edgecascade[grpc]')", key="cloud.url"
        ) from None
    cls: type[CloudClient] = getattr(module, cls_name)
    return cls


def build_cloud_client(profile: DeviceProfile, model: str | None = None) -> CloudClient:
    """The client for the profile's [cloud] url asking `model` (default: cloud.model); the
    do-nothing client when the profile has no url."""
    from edgecascade.edge.cloud_client.base import NullCloudClient

    if profile.cloud.url is None:
        return NullCloudClient()
    config = profile.cloud if model is None else profile.cloud.model_copy(update={"model": model})
    return client_class(profile.cloud.url)(config, device_id=profile.device_id)  # type: ignore[call-arg]
