"""The fleet manager: signed model updates, canaries, device status and telemetry views."""
