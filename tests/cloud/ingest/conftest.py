"""The `store` fixture: each test runs on SQLite in tmp_path and on the machine's real
PostgreSQL (database `test`, a schema of its own, dropped afterwards)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from edgecascade.cloud.ingest.postgres_store import PostgresStore
from edgecascade.cloud.ingest.sqlite_store import SqliteStore
from edgecascade.cloud.ingest.store import TelemetryStore

PG_URLS = ["postgresql://postgres@127.0.0.1:5432/test", "postgresql://root@127.0.0.1:5432/test"]


def pg_url() -> str | None:
    for url in PG_URLS:
        try:
            psycopg.connect(url, connect_timeout=2).close()
            return url
        except psycopg.OperationalError:
            continue
    return None


@pytest.fixture(params=["sqlite", "postgres"])
def store(request, tmp_path: Path) -> Iterator[TelemetryStore]:  # type: ignore[no-untyped-def]
    if request.param == "sqlite":
        s: TelemetryStore = SqliteStore(tmp_path / "t.sqlite3")
        s.cli_url = str(tmp_path / "t.sqlite3")  # type: ignore[attr-defined]
        yield s
        s.close()
        return
    url = pg_url()
    if url is None:
        pytest.skip("PostgreSQL is not reachable at 127.0.0.1:5432 (database test)")
    schema = f"ec_test_{uuid.uuid4().hex[:10]}"
    s = PostgresStore(url, table_schema=schema)
    # What a CLI is given to reach the same tables: the URL with the schema as search_path.
    s.cli_url = f"{url}?options=-csearch_path%3D{schema}"  # type: ignore[attr-defined]
    try:
        yield s
    finally:
        s.close()
        with psycopg.connect(url, autocommit=True) as db:
            db.execute(f'DROP SCHEMA "{schema}" CASCADE')
