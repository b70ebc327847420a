"""Migration 0008 (folded match-key indexes) up and down on a database that holds records."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from connectors.store import RecordStore, make_engine, migrate, schema
from pipelines.imports.engine import ImportOptions, run_import
from tests.imports.helpers import apps_csv

FOLDED = {
    "ix_users_account_id_lower_external_id",
    "ix_jobs_account_id_lower_external_id",
    "ix_jobs_account_id_lower_code",
    "ix_applications_account_id_lower_external_id",
    "ix_contracts_account_id_lower_external_id",
}
EXACT = {
    "ix_users_account_id_external_id",
    "ix_jobs_account_id_external_id",
    "ix_applications_account_id_external_id",
    "ix_contracts_account_id_external_id",
}


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def empty_url(request: pytest.FixtureRequest, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'empty.db'}"
    factory: Callable[[], str] = request.getfixturevalue("pg_database_factory")
    return factory()


def _indexes(engine: sa.Engine) -> set[str]:
    with engine.connect() as c:
        if engine.dialect.name == "sqlite":
            return set(c.exec_driver_sql("SELECT name FROM sqlite_master WHERE type = 'index'").scalars())
        return set(c.exec_driver_sql("SELECT indexname FROM pg_indexes WHERE schemaname = 'public'").scalars())


def _fill(engine: sa.Engine) -> tuple[uuid.UUID, dict[str, uuid.UUID]]:
    """An account at 0007 holding two jobs whose codes differ only in case, a candidate and an application."""
    account, user, app = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    jobs = {"ENG-1": uuid.uuid4(), "eng-1": uuid.uuid4()}
    old = datetime(2025, 1, 1, tzinfo=UTC)
    with engine.begin() as c:
        c.execute(schema.accounts.insert().values(id=account, slug="legacy", name="Legacy"))
        for i, (code, id_) in enumerate(jobs.items()):
            c.execute(
                schema.jobs.insert().values(
                    id=id_,
                    account_id=account,
                    code=code,
                    title=code,
                    external_id=f"REQ-{i}",
                    created_at=old + timedelta(days=i),
                    updated_at=old + timedelta(days=i),
                )
            )
        c.execute(
            schema.users.insert().values(
                id=user, account_id=account, email="ann@x.org", email_normalized="ann@x.org", external_id="CAND-1"
            )
        )
        c.execute(
            schema.applications.insert().values(
                id=app, account_id=account, candidate_id=user, job_id=jobs["ENG-1"], external_id="APP-1"
            )
        )
        c.execute(
            schema.contracts.insert().values(
                id=uuid.uuid4(), account_id=account, application_id=app, external_id="CTR-1"
            )
        )
    return account, jobs


def _snapshot(engine: sa.Engine) -> dict[str, list[tuple]]:
    with engine.connect() as c:
        return {
            t: sorted(map(tuple, c.execute(sa.select(schema.metadata.tables[t])).all()), key=str)
            for t in ("accounts", "jobs", "users", "applications", "contracts")
        }


def test_upgrade_keeps_jobs_whose_codes_differ_in_case_and_downgrade_restores_the_exact_indexes(
    empty_url, tmp_path
) -> None:
    engine = make_engine(empty_url)
    migrate.upgrade(engine, "0007")
    account, jobs = _fill(engine)
    data = _snapshot(engine)

    migrate.upgrade(engine, "0008")
    assert _indexes(engine) >= FOLDED and not EXACT & _indexes(engine)
    assert _snapshot(engine) == data
    # at head, an import matches the older of the two jobs, and the application by its external id in another case
    migrate.upgrade(engine)
    store = RecordStore(empty_url)
    path = apps_csv(tmp_path, ["app-1,Ann,One,ann@x.org,Eng-1,Offer,2026-01-01,1"])
    r = run_import(store, account, path, ImportOptions(), failed_rows_dir=tmp_path)
    assert (r.created, r.updated, r.details["jobs_created"]) == (0, 1, 0)
    with engine.connect() as c:
        assert c.execute(sa.select(schema.applications.c.job_id, schema.applications.c.stage)).one() == (
            jobs["ENG-1"],
            "offer",
        )
    store.dispose()
    data = _snapshot(engine)

    migrate.downgrade(engine, "0007")
    assert _indexes(engine) >= EXACT and not FOLDED & _indexes(engine)
    assert _snapshot(engine) == data
    migrate.upgrade(engine)
    assert _indexes(engine) >= FOLDED
    assert _snapshot(engine) == data
    engine.dispose()
