"""The cloud side: the V2 inference API, telemetry ingestion and the fleet manager."""
