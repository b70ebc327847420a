"""How a bulk job ends, and when it was created: the rule for failed records, timestamps, paging."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from connectors.store import schema
from pipelines.bulk import service


def _run(store, account, **kwargs) -> dict:
    job = service.create_job(store, account, created_by=None, **kwargs)
    return service.run_job_now(store, account, uuid.UUID(job["id"]), batch_size=3)


@pytest.mark.parametrize(
    ("operation", "params"),
    [
        # set-based on PostgreSQL, record by record on SQLite
        pytest.param("status_update", {"status": "rejected"}, id="status"),
        pytest.param("tags_add", {"tags": ["x"]}, id="tags"),
    ],
)
def test_a_job_in_which_every_record_failed_ends_failed_with_its_reasons(store, account, operation, params) -> None:
    job = _run(
        store,
        account,
        entity_type="applications",
        operation=operation,
        entity_ids=[uuid.uuid4() for _ in range(7)],
        params=params,
    )
    assert (job["status"], job["total_count"], job["processed_count"], job["failed_count"]) == ("failed", 7, 7, 7)
    assert job["error_message"] == "all 7 records failed: not found (7)"
    assert job["summary"]["failed_reasons"] == [{"error": "not found", "count": 7}]
    assert job["finished_at"] is not None
    with pytest.raises(service.InvalidState):
        service.create_rollback(store, account, job["id"])


def test_mixed_reasons_are_counted_most_frequent_first(seed, store, account) -> None:
    # hard delete: a contract of an application blocks it, unknown ids are not found
    blocked = seed.applications(2)
    seed.contracts(1, application_id=blocked[0])
    seed.contracts(1, application_id=blocked[1])
    job = service.create_job(
        store,
        account,
        created_by=None,
        entity_type="applications",
        operation="delete",
        entity_ids=[*blocked, *(uuid.uuid4() for _ in range(3))],
        params={"hard": True},
        mode="preview",
    )
    plan = service.preview(store, account, job["id"])
    service.confirm(store, account, job["id"], plan_id=plan["plan_id"])
    done = service.run_job_now(store, account, uuid.UUID(job["id"]))
    assert (done["status"], done["failed_count"]) == ("failed", 5)
    assert done["error_message"] == (
        "all 5 records failed: not found (3), cannot hard delete: referenced by contracts (2)"
    )


def test_a_job_with_some_failures_completes_with_failed_count(seed, store, account) -> None:
    ids = seed.applications(4)
    job = _run(
        store,
        account,
        entity_type="applications",
        operation="status_update",
        entity_ids=[*ids, uuid.uuid4()],
        params={"status": "rejected"},
    )
    assert (job["status"], job["processed_count"], job["failed_count"], job["succeeded_count"]) == (
        "completed",
        5,
        1,
        4,
    )
    # error_message names a failure of the job itself; per-record failures are counted and listed
    assert job["error_message"] is None
    assert job["summary"]["failed_reasons"] == [{"error": "not found", "count": 1}]
    clean = _run(
        store,
        account,
        entity_type="applications",
        operation="status_update",
        entity_ids=ids,
        params={"status": "active"},
    )
    assert (clean["status"], clean["error_message"], clean["summary"]) == ("completed", None, {})


def test_a_job_whose_records_were_all_skipped_completes(seed, store, account) -> None:
    applied = seed.applications(2, stage="applied")
    job = _run(
        store, account, entity_type="contracts", operation="create", entity_ids=applied, params={"template": "standard"}
    )
    assert (job["status"], job["skipped_count"], job["failed_count"]) == ("completed", 2, 0)


def test_a_dry_run_where_every_record_would_fail_ends_failed_and_still_reports(store, account) -> None:
    job = service.create_job(
        store,
        account,
        created_by=None,
        entity_type="applications",
        operation="delete",
        entity_ids=[uuid.uuid4(), uuid.uuid4()],
        mode="dry_run",
    )
    done = service.run_job_now(store, account, uuid.UUID(job["id"]))
    assert (done["status"], done["error_message"]) == ("failed", "all 2 records failed: not found (2)")
    report = service.preview(store, account, job["id"])
    assert (report["would_change"], report["not_found"]) == (0, 2)


def _stored(store, job_id: str):
    t = schema.bulk_jobs
    with store.engine.connect() as conn:
        return conn.execute(t.select().where(t.c.id == uuid.UUID(job_id))).one()


def test_created_at_and_updated_at_share_one_clock_and_resolution(seed, store, account) -> None:
    ids = seed.applications(1)
    start = datetime.now(UTC)
    job = service.create_job(
        store, account, created_by=None, entity_type="applications", operation="delete", entity_ids=ids
    )
    end = datetime.now(UTC)
    assert job["created_at"] == job["updated_at"]
    # microseconds are kept: a time cut to the second would fall before `start`
    assert start <= datetime.fromisoformat(job["created_at"]) <= end
    rollback = service.create_rollback(store, account, service.run_job_now(store, account, uuid.UUID(job["id"]))["id"])
    assert rollback["created_at"] == rollback["updated_at"]
    assert rollback["created_at"] > job["created_at"]


def test_paging_by_the_last_job_id_keeps_jobs_created_in_the_same_second(seed, store, account) -> None:
    made = [
        service.create_job(
            store,
            account,
            created_by=None,
            entity_type="applications",
            operation="delete",
            entity_ids=seed.applications(1),
        )["id"]
        for _ in range(3)
    ]
    t = schema.bulk_jobs
    # the same instant for two of them, as two requests in one clock tick would get
    first = _stored(store, made[0]).created_at
    with store.begin() as conn:
        conn.execute(t.update().where(t.c.id == uuid.UUID(made[1])).values(created_at=first))
    seen, before = [], None
    while True:
        page = service.list_jobs(store, account, limit=1, before=before)
        if not page:
            break
        seen.append(page[0]["id"])
        before = uuid.UUID(page[0]["id"])
    assert sorted(seen) == sorted(made) and len(seen) == 3
    assert seen[0] == made[2]
    by_time = service.list_jobs(store, account, before=datetime.fromisoformat(_iso(store, made[2])))
    assert sorted(j["id"] for j in by_time) == sorted(made[:2])
    with pytest.raises(service.JobNotFound):
        service.list_jobs(store, account, before=uuid.uuid4())


def _iso(store, job_id: str) -> str:
    return service.job_to_dict(_stored(store, job_id))["created_at"].replace("Z", "+00:00")
