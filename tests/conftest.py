"""Shared fixtures: a real SQLite file and a real PostgreSQL database per test session.

Tests isolate from each other by account (every path is account-scoped), so the migrated
databases are shared by the session and each test gets a fresh account.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from connectors.store import RecordStore, make_engine, migrate

# keep tests away from the developer's var/: every default path lands in a throwaway directory
os.environ["BULKOPS_VAR_DIR"] = tempfile.mkdtemp(prefix="bulkops-test-var-")
os.environ.pop("BULKOPS_DATABASE_URL", None)
os.environ.pop("DAGSTER_HOME", None)
# runs go to the instance a test names, never to a webserver the developer's shell points at
os.environ.pop("BULKOPS_DAGSTER_GRAPHQL_URL", None)

PG_ADMIN_URL = os.environ.get("BULKOPS_TEST_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


def _pg_admin() -> sa.Engine:
    engine = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect():
            pass
    except sa.exc.OperationalError as exc:
        # never skip: a missing server is a failure, CI starts it
        raise RuntimeError(
            f"PostgreSQL is required for the tests and is not reachable at {PG_ADMIN_URL}: {exc}"
        ) from exc
    return engine


@pytest.fixture(scope="session")
def pg_database_factory() -> Iterator:
    """Creates throwaway PostgreSQL databases and drops them all at the end of the session."""
    admin = _pg_admin()
    created: list[str] = []

    def create() -> str:
        name = f"bulkops_test_{uuid.uuid4().hex[:12]}"
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        created.append(name)
        return sa.make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)

    yield create
    with admin.connect() as conn:
        for name in created:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def pg_url(pg_database_factory) -> str:
    url = pg_database_factory()
    engine = make_engine(url)
    migrate.upgrade(engine)
    engine.dispose()
    return url


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('store') / 'bulkops.db'}"
    engine = make_engine(url)
    migrate.upgrade(engine)
    engine.dispose()
    return url


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest) -> str:
    """The URL of a migrated record store, once per backend."""
    return request.getfixturevalue("pg_url" if request.param == "postgresql" else "sqlite_url")


@pytest.fixture
def store(store_url: str) -> Iterator[RecordStore]:
    s = RecordStore(store_url)
    yield s
    s.dispose()


@pytest.fixture
def account(store: RecordStore) -> uuid.UUID:
    """A fresh account: the test's private corner of the shared database."""
    return store.ensure_account(f"t-{uuid.uuid4().hex[:10]}")


@pytest.fixture
def instance(tmp_path: Path) -> Iterator[dg.DagsterInstance]:
    home = tmp_path / "dagster"
    home.mkdir()
    with dg.instance_for_test(temp_dir=str(home)) as inst:
        yield inst


@pytest.fixture(scope="session")
def deployment(pg_database_factory, tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    """One `dagster dev` (webserver + daemon) per session and worker, on a private Dagster home and a
    fresh PostgreSQL record store; its tests share a worker (`xdist_group("dagster_dev")`)."""
    from tests.dagster_deployment import run_deployment

    store_url = pg_database_factory()
    engine = make_engine(store_url)
    migrate.upgrade(engine)
    engine.dispose()
    with run_deployment(store_url, tmp_path_factory.mktemp("deployment")) as deployed:
        yield deployed


# tests that take seconds each (Dagster runs in subprocesses, deployments, kill -9, large files), measured
# with `pytest -n 2 --durations=0` on the shared 2-core machine: `pytest -m "not slow"` leaves them out
SLOW_MODULES = frozenset(
    {
        "tests/api/test_jobs.py",
        "tests/bulk/test_dagster.py",
        "tests/imports/test_cli.py",
        "tests/imports/test_faults.py",
        "tests/test_devserver.py",
        "tests/test_queued_runs.py",
        "tests/test_runs.py",
    }
)
SLOW_TESTS = frozenset(
    {
        "tests/api/test_errors.py::test_malformed_json_is_400",
        "tests/bulk/test_cli_jobs.py::test_jobs_create_runs_the_job_and_rollback_restores_it",
        "tests/bulk/test_webhooks.py::test_bulk_trigger_delivers_webhooks_after_a_transient_500",
        "tests/imports/test_assets.py::test_a_dry_run_writes_nothing_and_reports_a_sample",
        "tests/imports/test_assets.py::test_a_failed_drop_moves_to_failed_and_its_partition_re_runs_after_the_fix",
        "tests/imports/test_assets.py::test_a_materialization_imports_the_rows_records_history_and_reports_metadata",
        "tests/imports/test_assets.py::test_a_run_waits_while_an_earlier_run_imports_the_same_content",
        "tests/imports/test_assets.py::test_a_transient_database_error_is_retried_then_fails",
        "tests/imports/test_assets.py::test_an_identical_file_is_recorded_as_skipped_not_imported_twice",
        "tests/imports/test_assets.py::test_drop_zone_files_move_to_processed_and_a_re_drop_is_skipped",
        "tests/imports/test_assets.py::test_progress_is_observed_per_committed_batch",
        "tests/imports/test_assets.py::test_rows_with_errors_fail_the_error_rate_check_and_leave_a_failed_rows_csv",
        "tests/imports/test_assets.py::test_terminal_errors_fail_once_without_retries",
        "tests/imports/test_concurrency.py::test_concurrent_imports_on_sqlite_neither_fail_nor_duplicate",
        "tests/imports/test_planner_statistics.py::test_a_new_account_is_in_the_statistics_before_its_first_batch_looks_up_its_own_rows",
        "tests/imports/test_planner_statistics.py::test_import_analyzes_lookup_tables_each_time_it_doubles_the_account",
        "tests/imports/test_rollback_job.py::test_rollback_job_fails_clearly_without_retrying",
        "tests/imports/test_rollback_job.py::test_rollback_job_undoes_the_import_and_marks_its_partition",
        "tests/imports/test_sensors.py::test_history_and_partition_say_where_a_dropped_file_is_now",
        "tests/imports/test_sensors.py::test_thousands_of_files_keep_a_small_cursor_and_a_capped_tick",
        "tests/resources/test_store_resource.py::test_a_run_against_a_stale_schema_fails_once_naming_the_command",
        "tests/resources/test_store_resource.py::test_a_run_writes_and_reads_the_store_it_is_given",
        "tests/resources/test_store_resource.py::test_without_a_url_a_run_opens_the_store_named_by_the_environment_at_run_time",
        "tests/store/test_migrations.py::test_each_revision_downgrades_one_step_and_back",
    }
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        module, _, name = item.nodeid.partition("::")
        if module in SLOW_MODULES or f"{module}::{name.split('[')[0]}" in SLOW_TESTS:
            item.add_marker(pytest.mark.slow)


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:  # type: ignore[no-untyped-def]
    # make it visible in CI output that the PostgreSQL tests ran rather than skipped
    counts: dict[str, int] = {}
    for outcome in ("passed", "failed", "skipped", "error"):
        for report in terminalreporter.stats.get(outcome, []):
            if getattr(report, "when", "call") == "call" and "postgres" in getattr(report, "keywords", {}):
                counts[outcome] = counts.get(outcome, 0) + 1
    summary = ", ".join(f"{n} {k}" for k, n in counts.items()) or "none ran"
    terminalreporter.write_line(f"PostgreSQL ({PG_ADMIN_URL}): {summary}")
