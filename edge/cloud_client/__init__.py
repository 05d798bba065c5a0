"""How the device asks the cloud about hard cases."""

from edge.cloud_client.base import CloudAnswer, CloudClient, NullCloudClient

__all__ = ["CloudAnswer", "CloudClient", "NullCloudClient"]
