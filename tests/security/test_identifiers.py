"""Hostile identifiers and values: names are checked against the registry, values are always bound.

Each way a user names a field (an import mapping, a file's header, an export or bulk-job filter,
a bulk field update, a sync connection's table and columns) gets SQL text instead of a name or a
value; each is refused by name or stored as plain data, and the tables are all still there.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from connectors.store import RecordStore, schema
from connectors.store.export import build_query
from connectors.store.export.filters import FilterError, make_filter
from connectors.sync.base import SyncSourceError
from connectors.sync.sql import SqlConnector
from pipelines.bulk import service
from pipelines.imports.engine import run_import
from pipelines.imports.errors import MappingError
from pipelines.imports.mapping import parse_mapping
from pipelines.imports.options import ImportOptions
from tests.bulk.conftest import Seeder

DROP = "x'); DROP TABLE users; --"
OR_TRUE = "review' OR '1'='1"


def _tables_intact(store: RecordStore) -> None:
    names = set(sa.inspect(store.engine).get_table_names())
    assert {"users", "applications", "jobs", "audit_log", "bulk_jobs"} <= names


def test_a_mapping_naming_sql_as_a_field_is_refused_by_name() -> None:
    with pytest.raises(MappingError, match="unknown target field"):
        parse_mapping({"columns": {"Email": f"email{DROP}"}})


def test_a_header_and_a_cell_of_sql_are_stored_as_data(store: RecordStore, account: uuid.UUID, tmp_path: Path) -> None:
    f = tmp_path / "hostile.csv"
    f.write_text(f'Email,Job Code,"{DROP}"\nann@example.com,ENG-1,"{DROP}"\n', encoding="utf-8")
    r = run_import(store, account, f, ImportOptions(), failed_rows_dir=tmp_path)
    assert (r.created, r.errors) == (1, 0)
    _tables_intact(store)
    with store.engine.connect() as c:
        data = c.scalar(sa.select(schema.applications.c.data).where(schema.applications.c.account_id == account))
    assert data == {DROP: DROP} or DROP in data.values()


@pytest.mark.parametrize(
    ("condition", "message"),
    [
        pytest.param(f"stage{DROP}=review", "is not FIELD OP VALUE", id="text"),
        pytest.param({"field": f"stage{DROP}", "op": "=", "value": "x"}, "unknown", id="field"),
        pytest.param({"field": "stage", "op": "= 1 OR 1=1 --", "value": "x"}, "operator", id="operator"),
    ],
)
def test_an_export_filter_naming_sql_is_refused(account: uuid.UUID, condition, message: str) -> None:
    with pytest.raises(FilterError, match=message):
        build_query("applications", "postgresql", account, make_filter([condition]))


def test_a_filter_value_of_sql_is_bound_and_matches_nothing(store: RecordStore, account: uuid.UUID) -> None:
    seed = Seeder(store, account)
    seed.applications(3, stage="review")
    with pytest.raises(service.InvalidRequest, match="no record matches the filter"):
        service.create_job(
            store, account, created_by=None, entity_type="applications", operation="status_update",
            filter=[f"stage={OR_TRUE}"], params={"status": "rejected"},
        )  # fmt: skip
    with pytest.raises(service.InvalidRequest):
        service.create_job(
            store, account, created_by=None, entity_type="applications", operation="field_update",
            entity_ids=seed.applications(1), params={"fields": {"account_id": str(uuid.uuid4())}},
        )  # fmt: skip
    # a value of SQL set by a bulk job is stored as it is
    ids = seed.applications(2)
    job = service.create_job(
        store, account, created_by=None, entity_type="applications", operation="field_update",
        entity_ids=ids, params={"fields": {"source": DROP}},
    )  # fmt: skip
    assert service.run_job_now(store, account, uuid.UUID(job["id"]))["failed_count"] == 0
    _tables_intact(store)
    rows = seed.rows(schema.applications, ids)
    assert {r.source for r in rows.values()} == {DROP}


@pytest.mark.parametrize(
    ("table", "key", "message"),
    [
        pytest.param(f"hr{DROP}", "id", "no table", id="table"),
        pytest.param("hr", f"id{DROP}", "no key column", id="column"),
    ],
)
def test_a_sync_source_naming_sql_is_refused_by_name(tmp_path: Path, table: str, key: str, message: str) -> None:
    url = f"sqlite:///{tmp_path / 'hr.db'}"
    engine = sa.create_engine(url)
    with engine.begin() as c:
        c.exec_driver_sql("CREATE TABLE hr (id TEXT PRIMARY KEY, email TEXT)")
        c.exec_driver_sql("CREATE TABLE users (id TEXT)")
    with pytest.raises(SyncSourceError, match=message):
        SqlConnector(url, table, key=key)
    assert {"hr", "users"} <= set(sa.inspect(engine).get_table_names())
    engine.dispose()
