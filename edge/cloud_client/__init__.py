"""How the device asks the cloud about hard cases."""

from edgecascade.edge.cloud_client.base import CloudAnswer, CloudClient, NullCloudClient

__all__ = ["CloudAnswer", "CloudClient", "NullCloudClient"]
