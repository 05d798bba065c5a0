"""Device profiles: typed, validated at start-up, one section model per concern."""

from edgecascade.edge.config.loader import load_profile
from edgecascade.edge.config.profile import DeviceProfile

__all__ = ["DeviceProfile", "load_profile"]
