"""Cloud-side telemetry ingestion: MQTT subscriber -> deduplicating store (SQLite or PostgreSQL)."""

from edgecascade.cloud.ingest.ingester import Ingester
from edgecascade.cloud.ingest.store import DeviceSummary, StoreResult, TelemetryStore
from edgecascade.cloud.ingest.stores import open_store

__all__ = ["DeviceSummary", "Ingester", "StoreResult", "TelemetryStore", "open_store"]
