"""The device agent: local models, the cascade, caches, telemetry and model updates."""
