"""The import keeps the planner's statistics of the tables it grows (PostgreSQL only)."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from connectors.store import RecordStore, imports
from connectors.store.importing import statistics
from pipelines.imports.engine import ImportOptions, run_import
from tests.imports.helpers import apps_csv

pytestmark = pytest.mark.postgres


@pytest.fixture
def fresh_store(pg_database_factory, own_store_at) -> RecordStore:
    """A store of its own: statistics are per database, the shared one's depend on other tests."""
    return own_store_at(pg_database_factory())


def _reltuples(store: RecordStore, table: str) -> float:
    with store.engine.connect() as c:
        return c.execute(
            sa.text("SELECT reltuples FROM pg_class WHERE oid = CAST(:t AS regclass)"), {"t": table}
        ).scalar()


def _csv(tmp_path: Path, n: int, prefix: str, dup_every: int = 0) -> Path:
    rows = [f"{prefix}-{i},F{i},L{i},{prefix}{i}@example.com,JOB-{i % 3},Applied,2026-01-02,{i % 9}" for i in range(n)]
    if dup_every:
        # the same candidate and job again: a second round inside the batch updates the first
        rows += [
            f"{prefix}-{i},F{i},L{i},{prefix}{i}@example.com,JOB-{i % 3},Interview,2026-01-02,{i % 9}"
            for i in range(0, n, dup_every)
        ]
    return apps_csv(tmp_path, rows, name=f"{prefix}.csv")


def test_import_analyzes_lookup_tables_each_time_it_doubles_the_account(fresh_store, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(statistics, "ANALYZE_MIN_ROWS", 1000)
    account = fresh_store.ensure_account("stats")
    assert _reltuples(fresh_store, "applications") < 0  # never analyzed
    r = run_import(
        fresh_store, account, _csv(tmp_path, 2500, "a"), ImportOptions(batch_size=500), failed_rows_dir=tmp_path
    )
    assert (r.status, r.created) == ("completed", 2500)
    # analyzed before batch 1 (never analyzed), before batch 2 (the account had no rows), before
    # batch 4 (1,000 rows added >= max(1,000 minimum, 500 known)), not before batch 5 (500 < 1,500)
    assert _reltuples(fresh_store, "applications") == 1500
    assert _reltuples(fresh_store, "users") == 1500


def test_a_new_account_is_in_the_statistics_before_its_first_batch_looks_up_its_own_rows(fresh_store, tmp_path) -> None:
    first, second = fresh_store.ensure_account("first"), fresh_store.ensure_account("second")
    run_import(fresh_store, first, _csv(tmp_path, 3000, "f"), ImportOptions(batch_size=5000), failed_rows_dir=tmp_path)
    with fresh_store.engine.begin() as c:
        c.execute(sa.text("ANALYZE applications"))
    # one batch whose second round finds the rows its first round created
    r = run_import(
        fresh_store,
        second,
        _csv(tmp_path, 3000, "s", dup_every=10),
        ImportOptions(batch_size=5000),
        failed_rows_dir=tmp_path,
    )
    assert (r.status, r.created, r.updated) == ("completed", 3000, 300)
    with fresh_store.engine.connect() as c:
        common = c.execute(
            sa.text(
                "SELECT most_common_vals::text FROM pg_stats WHERE tablename = 'applications' AND attname = 'account_id'"
            )
        ).scalar()
    assert str(second) in common and str(first) in common


@pytest.mark.parametrize("server_value", ["on", "off"])
def test_the_job_lookup_gives_back_the_servers_enable_nestloop(
    fresh_store, tmp_path, monkeypatch, server_value
) -> None:
    # the job lookup switches nested loops off for one statement; the rest of the batch runs
    # with the value the server (here: the database) set, not with PostgreSQL's default
    with fresh_store.engine.connect() as c:
        db = c.execute(sa.text("SELECT current_database()")).scalar()
    with fresh_store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
        c.execute(sa.text(f'ALTER DATABASE "{db}" SET enable_nestloop = {server_value}'))
    fresh_store.engine.dispose()  # new sessions read the database's setting
    seen: list[str] = []
    resolve = imports.ImportWriter._resolve_candidates

    def spy(self, r):
        seen.append(self.conn.exec_driver_sql("SHOW enable_nestloop").scalar())
        return resolve(self, r)

    monkeypatch.setattr(imports.ImportWriter, "_resolve_candidates", spy)
    account = fresh_store.ensure_account("nestloop")
    r = run_import(
        fresh_store, account, _csv(tmp_path, 30, "n"), ImportOptions(batch_size=10), failed_rows_dir=tmp_path
    )
    assert (r.status, r.created) == ("completed", 30)
    assert seen == [server_value] * 3
