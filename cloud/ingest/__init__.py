"""Cloud-side telemetry ingestion: MQTT subscriber -> deduplicating store (SQLite or PostgreSQL)."""

from edgecascade.cloud.ingest.ingester import Ingester
from edgecascade.cloud.ingest.store import DeviceSummary, TelemetryStore, open_store

__all__ = ["DeviceSummary", "Ingester", "TelemetryStore", "open_store"]
