"""The import keeps the planner's statistics of the tables it grows (PostgreSQL only)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from connectors.store import RecordStore, make_engine, migrate
from pipelines.imports.engine import ImportOptions, run_import
from tests.imports.helpers import apps_csv

pytestmark = pytest.mark.postgres


def _reltuples(store: RecordStore, table: str) -> float:
    with store.engine.connect() as c:
        return c.execute(sa.text("SELECT reltuples FROM pg_class WHERE oid = CAST(:t AS regclass)"), {"t": table}).scalar()


def test_import_analyzes_lookup_tables_each_time_it_doubles_them(pg_database_factory, tmp_path) -> None:
    url = pg_database_factory()
    engine = make_engine(url)
    migrate.upgrade(engine)
    engine.dispose()
    store = RecordStore(url)
    try:
        account = store.ensure_account("stats")
        assert _reltuples(store, "applications") < 0  # never analyzed
        rows = [f"APP-{i},F{i},L{i},p{i}@example.com,JOB-{i % 3},Applied,2026-01-02,{i % 9}" for i in range(2500)]
        r = run_import(store, account, apps_csv(tmp_path, rows), ImportOptions(batch_size=500), failed_rows_dir=tmp_path)
        assert (r.status, r.created) == ("completed", 2500)
        # analyzed before batch 1 (never analyzed), before batch 3 (1,000 rows added >= the
        # 1,000-row minimum) and before batch 5 (1,000 more >= the 1,000 analyzed): not per batch
        assert _reltuples(store, "applications") == 2000
        assert _reltuples(store, "users") == 2000
    finally:
        store.dispose()
