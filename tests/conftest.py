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


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:  # type: ignore[no-untyped-def]
    # make it visible in CI output that the PostgreSQL tests ran rather than skipped
    counts: dict[str, int] = {}
    for outcome in ("passed", "failed", "skipped", "error"):
        for report in terminalreporter.stats.get(outcome, []):
            if getattr(report, "when", "call") == "call" and "postgres" in getattr(report, "keywords", {}):
                counts[outcome] = counts.get(outcome, 0) + 1
    summary = ", ".join(f"{n} {k}" for k, n in counts.items()) or "none ran"
    terminalreporter.write_line(f"PostgreSQL ({PG_ADMIN_URL}): {summary}")
