"""Device profiles: typed, validated at start-up, one section model per concern."""

from edge.config.loader import load_profile
from edge.config.profile import DeviceProfile

__all__ = ["DeviceProfile", "load_profile"]
