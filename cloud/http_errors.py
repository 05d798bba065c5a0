"""The cloud's error-to-status map is the protocol's own (shared/v2/status.py), so the cloud
and the agent answer every error alike."""

from __future__ import annotations

from edgecascade.shared.v2.status import status_for

__all__ = ["status_for"]
