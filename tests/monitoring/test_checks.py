"""The record store's consistency checks find what breaks each rule, on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from connectors.store import RecordStore, checks, schema
from pipelines.bulk import service
from pipelines.definitions import defs
from pipelines.imports.engine import ImportOptions, run_import
from resources import RecordStoreResource
from tests.monitoring.helpers import add_bulk_job, add_import

# real imports, runs and SMTP servers on both databases: each takes about a second
pytestmark = pytest.mark.slow

WEEK_AGO = datetime.now(UTC) - timedelta(days=7)


def _user(conn: sa.Connection, account: uuid.UUID, email: str, normalized: str | None, **kw: object) -> uuid.UUID:
    id_ = uuid.uuid4()
    conn.execute(
        schema.users.insert().values(id=id_, account_id=account, email=email, email_normalized=normalized, **kw)
    )
    return id_


def test_emails_equal_once_normalised_are_duplicates(store: RecordStore, account: uuid.UUID) -> None:
    with store.begin() as conn:
        _user(conn, account, "Ann@Example.com", "ann@example.com")
        # written without its normalised key, as a careless writer would
        _user(conn, account, " ann@example.com", None)
        _user(conn, account, "bob@example.com", "bob@example.com")
        _user(conn, account, "BOB@example.com", None, deleted_at=datetime.now(UTC))
    with store.engine.connect() as conn:
        found = checks.duplicate_emails(conn, account_id=account)
    assert found.count == 1 and found.sample[0]["email"] == "ann@example.com" and found.sample[0]["users"] == "2"


def test_an_application_whose_candidate_is_deleted_or_of_another_account_is_found(
    store: RecordStore, account: uuid.UUID
) -> None:
    other = store.ensure_account(f"t-{uuid.uuid4().hex[:10]}")
    apps = schema.applications
    with store.begin() as conn:
        fine = _user(conn, account, "ok@example.com", "ok@example.com")
        gone = _user(conn, account, "gone@example.com", "gone@example.com", deleted_at=datetime.now(UTC))
        foreign = _user(conn, other, "x@example.com", "x@example.com")
        ids = [uuid.uuid4() for _ in range(3)]
        for app, cand in zip(ids, [fine, gone, foreign], strict=True):
            conn.execute(apps.insert().values(id=app, account_id=account, candidate_id=cand))
    with store.engine.connect() as conn:
        found = checks.applications_without_candidate(conn, account_id=account)
    assert found.count == 2 and {r["id"] for r in found.sample} == {str(ids[1]), str(ids[2])}


def test_counters_that_differ_from_their_outcomes_are_found(
    store: RecordStore, account: uuid.UUID, tmp_path: Path
) -> None:
    path = tmp_path / "people.csv"
    path.write_text("Email,First Name\na@example.com,A\nb@example.com,B\nbad,C\n")
    real = run_import(store, account, path, ImportOptions(entity="candidates"), failed_rows_dir=tmp_path)
    job = service.create_job(
        store, account, created_by=None, entity_type="applications", operation="delete", entity_ids=[uuid.uuid4()]
    )
    service.run_job_now(store, account, uuid.UUID(job["id"]))
    with store.engine.connect() as conn:
        clean = checks.counter_mismatches(conn, since=WEEK_AGO, account_id=account)
    # a counter that says more than happened
    with store.begin() as conn:
        conn.execute(
            schema.import_history.update().where(schema.import_history.c.id == real.import_id).values(created=3)
        )
        conn.execute(
            schema.bulk_jobs.update().where(schema.bulk_jobs.c.id == uuid.UUID(job["id"])).values(failed_count=0)
        )
    with store.engine.connect() as conn:
        broken = checks.counter_mismatches(conn, since=WEEK_AGO, account_id=account)

    assert clean.count == 0
    assert broken.count == 2
    by_kind = {r["kind"]: r for r in broken.sample}
    assert (by_kind["import"]["counted_a"], by_kind["import"]["found_a"]) == ("3", "2")
    assert (by_kind["bulk_job"]["counted_b"], by_kind["bulk_job"]["found_b"]) == ("0", "1")


@pytest.mark.slow
def test_the_checks_job_reports_each_check_with_what_broke_it(
    store: RecordStore, account: uuid.UUID, store_url: str, instance: dg.DagsterInstance
) -> None:
    orphan_run = uuid.uuid4().hex
    add_bulk_job(store, account, status="processing", seconds=None, run_id=orphan_run)
    stuck = add_import(store, account, status="processing", seconds=None, run_id=uuid.uuid4().hex)
    with store.begin() as conn:
        _user(conn, account, "dup@example.com", "dup@example.com")
        _user(conn, account, "DUP@example.com", None)

    result = defs.resolve_job_def("record_store_checks_job").execute_in_process(
        instance=instance, resources={"record_store": RecordStoreResource(database_url=store_url)}
    )

    assert result.success
    evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert set(evaluations) == {
        "no_duplicate_normalised_emails",
        "no_application_without_its_candidate",
        "every_processing_bulk_job_has_a_live_run",
        "no_change_set_stuck_in_progress",
        "counters_equal_their_outcomes",
    }
    for name in (
        "no_duplicate_normalised_emails",
        "every_processing_bulk_job_has_a_live_run",
        "no_change_set_stuck_in_progress",
    ):
        assert not evaluations[name].passed, name
    live = evaluations["every_processing_bulk_job_has_a_live_run"].metadata["sample"].value.records
    assert any(r.data["dagster_run_id"] == orphan_run and r.data["run"] == "run not found" for r in live) or (
        evaluations["every_processing_bulk_job_has_a_live_run"].metadata["count"].value > 20
    )
    stuck_rows = evaluations["no_change_set_stuck_in_progress"].metadata["sample"].value.records
    assert any(r.data["id"] == str(stuck) for r in stuck_rows) or (
        evaluations["no_change_set_stuck_in_progress"].metadata["count"].value > 20
    )
