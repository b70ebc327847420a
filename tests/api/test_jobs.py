"""Bulk jobs through the HTTP API, end to end: the server stores the job, Dagster runs it."""

from __future__ import annotations

import csv
import io
import re
import uuid

import dagster as dg
import httpx
import pytest

from connectors.store import RecordStore
from connectors.store.schema import users
from tests.api.helpers import (
    create,
    deleted_flags,
    error,
    join_launch,
    result,
    seed_applications,
    seed_candidates,
    wait_for,
    wait_for_job_run,
    wait_for_run,
)
from tests.faults import zombie_children

ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
BULK_JOB_FIELDS = {
    "id", "account_id", "created_by", "entity_type", "operation", "params", "status", "total_count",
    "processed_count", "failed_count", "error_message", "created_at", "updated_at",
}  # fmt: skip


def test_create_and_get_round_trip_with_the_documented_body(
    client: httpx.Client, store: RecordStore, account: uuid.UUID, api_instance: dg.DagsterInstance
) -> None:
    ids = seed_candidates(store, account, 3)
    unreaped = set(zombie_children())  # other tests' (theirs to check)
    job = create(client, entity_type="contacts", operation="delete", entity_ids=ids)
    assert set(job) >= BULK_JOB_FIELDS
    assert "entity_ids" not in job
    assert job["account_id"] == str(account)
    # contacts is stored under its canonical name
    assert (job["entity_type"], job["operation"], job["total_count"]) == ("candidates", "delete", 3)
    assert job["status"] in ("pending", "processing", "completed")
    assert ISO_UTC.match(job["created_at"]) and ISO_UTC.match(job["updated_at"])
    # the run id is known at once; the run is launched in the background and lands in Dagster's run history
    run_id = job["dagster_run_id"]

    done = wait_for(client, job["id"])
    assert done["status"] == "completed", done
    assert (done["total_count"], done["processed_count"], done["failed_count"]) == (3, 3, 0)
    assert deleted_flags(store, ids, users) == [True, True, True]
    assert wait_for_run(api_instance, run_id).status == dg.DagsterRunStatus.SUCCESS
    # the API launched the run through Dagster's run launcher and reaped what it started (once
    # its launch thread is done: the run may end before the thread reaps `dagster job launch`)
    join_launch(run_id)
    assert set(zombie_children()) - unreaped == set()

    by_body = result(client.post("/api/bulk-jobs-get", json={"id": job["id"]}))
    assert by_body == done
    with_ids = result(client.get("/api/bulk-jobs-get", params={"id": job["id"], "include_entity_ids": "true"}))
    assert with_ids["entity_ids"] == ids


def test_list_filters_by_status_and_pages(client: httpx.Client, store: RecordStore, account: uuid.UUID) -> None:
    first = create(
        client,
        entity_type="applications",
        operation="delete",
        entity_ids=seed_applications(store, account, 2),
        mode="preview",
    )
    second = create(
        client,
        entity_type="applications",
        operation="delete",
        entity_ids=seed_applications(store, account, 1),
        mode="preview",
    )
    listed = result(client.get("/api/bulk-jobs-list"))
    assert {j["id"] for j in listed} == {first["id"], second["id"]}
    assert [j["created_at"] for j in listed] == sorted((j["created_at"] for j in listed), reverse=True)
    assert all("entity_ids" not in j for j in listed)
    assert len(result(client.get("/api/bulk-jobs-list", params={"limit": 1}))) == 1
    assert result(client.get("/api/bulk-jobs-list", params={"status": "completed"})) == []
    assert (
        len(result(client.post("/api/bulk-jobs-list", json={"status": "pending", "before": "2999-01-01T00:00:00Z"})))
        == 2
    )
    assert result(client.post("/api/bulk-jobs-list", json={"before": "2000-01-01T00:00:00Z"})) == []
    assert error(client.get("/api/bulk-jobs-list", params={"status": "done"}), 422)["details"]["field"] == "status"
    assert error(client.get("/api/bulk-jobs-list", params={"limit": "0"}), 422)["details"]["field"] == "limit"
    assert (
        error(client.get("/api/bulk-jobs-list", params={"before": "last tuesday"}), 422)["details"]["field"] == "before"
    )


def test_another_accounts_job_is_not_found(
    client: httpx.Client, other_client: httpx.Client, store: RecordStore, account: uuid.UUID
) -> None:
    mine = seed_applications(store, account, 2)
    job = create(client, entity_type="applications", operation="delete", entity_ids=mine, mode="preview")
    for method, path, body in [
        ("GET", "/api/bulk-jobs-get", None),
        ("POST", "/api/bulk-jobs-cancel", None),
        ("GET", "/api/bulk-jobs-preview", None),
        ("POST", "/api/bulk-jobs-confirm", {"plan_id": "x"}),
        ("POST", "/api/bulk-jobs-rollback", None),
        ("GET", "/api/bulk-jobs-failed-records", None),
    ]:
        args = {"id": job["id"], **(body or {})}
        kwargs = {"params": args} if method == "GET" else {"json": args}
        assert error(other_client.request(method, path, **kwargs), 404)["code"] == "not_found", path
    assert result(other_client.get("/api/bulk-jobs-list")) == []

    # ids of my records in the other account's job: not found there, never touched
    theirs = wait_for(
        other_client, create(other_client, entity_type="applications", operation="delete", entity_ids=mine)["id"]
    )
    assert (theirs["status"], theirs["processed_count"], theirs["failed_count"]) == ("failed", 2, 2)
    assert theirs["error_message"] == "all 2 records failed: not found (2)"
    assert deleted_flags(store, mine) == [False, False]


def test_failed_records_download_as_csv(client: httpx.Client, store: RecordStore, account: uuid.UUID) -> None:
    real = seed_applications(store, account, 2)
    missing = str(uuid.uuid4())
    job = wait_for(
        client,
        create(client, entity_type="applications", operation="delete", entity_ids=[real[0], missing, real[1]])["id"],
    )
    assert (job["status"], job["processed_count"], job["failed_count"]) == ("completed", 3, 1)

    response = client.get("/api/bulk-jobs-failed-records", params={"id": job["id"]})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    assert f'filename="bulk-job-{job["id"]}-failed.csv"' in response.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert [r["entity_id"] for r in rows] == [missing]
    assert rows[0]["error"]


def test_preview_then_confirm_executes_exactly_the_plan(
    client: httpx.Client, store: RecordStore, account: uuid.UUID
) -> None:
    ids = seed_applications(store, account, 3)
    job = create(client, entity_type="applications", operation="delete", entity_ids=ids, mode="preview")
    assert job["status"] == "pending" and not job.get("dagster_run_id")
    assert deleted_flags(store, ids) == [False, False, False]

    plan = result(client.get("/api/bulk-jobs-preview", params={"id": job["id"], "limit": 2}))
    assert plan["total"] == 3 and len(plan["changes"]) == 2 and plan["plan_id"]
    assert result(client.post("/api/bulk-jobs-preview", json={"id": job["id"]}))["plan_id"] == plan["plan_id"]

    wrong = error(client.post("/api/bulk-jobs-confirm", json={"id": job["id"], "plan_id": "not-the-plan"}), 409)
    assert wrong["code"] == "invalid_state"
    assert error(client.post("/api/bulk-jobs-confirm", json={"id": job["id"]}), 422)["details"]["field"] == "plan_id"

    confirmed = result(client.post("/api/bulk-jobs-confirm", json={"id": job["id"], "plan_id": plan["plan_id"]}))
    assert confirmed["dagster_run_id"]
    done = wait_for(client, job["id"])
    assert (done["status"], done["processed_count"], done["failed_count"]) == ("completed", 3, 0)
    assert deleted_flags(store, ids) == [True, True, True]
    # confirmed once: a second confirm is refused
    assert (
        error(client.post("/api/bulk-jobs-confirm", json={"id": job["id"], "plan_id": plan["plan_id"]}), 409)["code"]
        == "invalid_state"
    )


@pytest.mark.parametrize("spelling", [{"mode": "dry_run"}, {"dry_run": True}], ids=["mode", "flag"])
def test_dry_run_reports_and_writes_nothing(
    client: httpx.Client, store: RecordStore, account: uuid.UUID, spelling: dict
) -> None:
    ids = seed_applications(store, account, 3)
    job = create(client, entity_type="applications", operation="delete", entity_ids=ids, **spelling)
    done = wait_for(client, job["id"])
    assert (done["status"], done["total_count"], done["failed_count"]) == ("completed", 3, 0)
    assert done["mode"] == "dry_run"
    assert deleted_flags(store, ids) == [False, False, False]


def test_rollback_restores_the_before_images(client: httpx.Client, store: RecordStore, account: uuid.UUID) -> None:
    ids = seed_applications(store, account, 3)
    job = wait_for(client, create(client, entity_type="applications", operation="delete", entity_ids=ids)["id"])
    assert job["status"] == "completed" and deleted_flags(store, ids) == [True, True, True]

    rollback = result(client.post("/api/bulk-jobs-rollback", json={"id": job["id"]}))
    assert rollback["id"] != job["id"] and rollback["dagster_run_id"]
    done = wait_for(client, rollback["id"])
    assert (done["status"], done["processed_count"], done["failed_count"]) == ("completed", 3, 0)
    assert deleted_flags(store, ids) == [False, False, False]


def test_rollback_of_an_unfinished_job_is_409(client: httpx.Client, store: RecordStore, account: uuid.UUID) -> None:
    job = create(
        client,
        entity_type="applications",
        operation="delete",
        entity_ids=seed_applications(store, account, 1),
        mode="preview",
    )
    assert error(client.post("/api/bulk-jobs-rollback", json={"id": job["id"]}), 409)["code"] == "invalid_state"


def test_cancel_stops_the_job_and_its_run(
    client: httpx.Client, store: RecordStore, account: uuid.UUID, api_instance: dg.DagsterInstance
) -> None:
    ids = seed_applications(store, account, 5000)
    job = create(client, entity_type="applications", operation="delete", entity_ids=ids)
    cancelled = result(client.post("/api/bulk-jobs-cancel", json={"id": job["id"]}))
    assert cancelled["id"] == job["id"]
    done = wait_for(client, job["id"])
    assert done["status"] == "cancelled", done
    # counts are exact: what was processed is what was deleted
    assert sum(deleted_flags(store, ids)) == done["processed_count"] - done["failed_count"]
    assert done["processed_count"] < done["total_count"]
    run = wait_for_job_run(client, api_instance, job["id"])
    if run is None:
        # cancelled before its launch had a slot: no run was started, the job names none, nothing was done
        assert done["processed_count"] == 0
        assert not api_instance.get_run_records(dg.RunsFilter(tags={"bulkops/bulk_job_id": job["id"]}))
    else:
        assert run.status in (dg.DagsterRunStatus.CANCELED, dg.DagsterRunStatus.SUCCESS)
    # a finished job cannot be cancelled again
    assert error(client.post("/api/bulk-jobs-cancel", json={"id": job["id"]}), 409)["code"] == "invalid_state"


def test_concurrent_creates_all_complete_with_exact_counts(
    base_url: str, token: str, store: RecordStore, account: uuid.UUID
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    batches = [seed_applications(store, account, 3) for _ in range(5)]

    def run(ids: list[str]) -> dict:
        with httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=120) as c:
            return wait_for(c, create(c, entity_type="applications", operation="delete", entity_ids=ids)["id"])

    with ThreadPoolExecutor(len(batches)) as pool:
        jobs = list(pool.map(run, batches))
    assert [(j["status"], j["processed_count"], j["failed_count"]) for j in jobs] == [("completed", 3, 0)] * len(
        batches
    )
    assert all(all(deleted_flags(store, ids)) for ids in batches)
    assert len({j["dagster_run_id"] for j in jobs}) == len(batches)


def test_create_with_parallel_runs_the_ranged_job_with_exact_counters(
    client: httpx.Client, store: RecordStore, account: uuid.UUID, api_instance: dg.DagsterInstance
) -> None:
    ids = seed_applications(store, account, 30)
    missing = [str(uuid.uuid4()) for _ in range(2)]
    job = create(client, entity_type="applications", operation="delete", entity_ids=ids + missing, parallel=3)
    assert job["parallel"] == 3 and job["summary"] == {"parallel": 3}

    run = wait_for_run(api_instance, job["dagster_run_id"], timeout=240)
    assert (run.job_name, run.status) == ("sharded_bulk_job", dg.DagsterRunStatus.SUCCESS)
    done = wait_for(client, job["id"])
    counts = ("status", "total_count", "processed_count", "failed_count", "skipped_count", "succeeded_count")
    assert tuple(done[c] for c in counts) == ("completed", 32, 32, 2, 0, 30)
    assert done["summary"]["ranges"] == [
        {"lo": 0, "hi": 11, "next": 11},
        {"lo": 11, "hi": 22, "next": 22},
        {"lo": 22, "hi": 32, "next": 32},
    ]
    assert deleted_flags(store, ids) == [True] * 30


@pytest.mark.parametrize("parallel", [0, 17, -1, "three", 2.5, True, None], ids=repr)
def test_create_refuses_a_parallel_out_of_1_to_16_naming_it(
    client: httpx.Client, store: RecordStore, account: uuid.UUID, parallel: object
) -> None:
    ids = seed_applications(store, account, 1)
    refused = error(
        client.post(
            "/api/bulk-jobs-create",
            json={"entity_type": "applications", "operation": "delete", "entity_ids": ids, "parallel": parallel},
        ),
        422,
    )
    assert refused["code"] == "invalid_request"
    assert refused["details"]["field"] == "parallel"
    assert "parallel must be an integer from 1 to 16" in refused["message"]
    # nothing was stored
    assert result(client.get("/api/bulk-jobs-list")) == []
