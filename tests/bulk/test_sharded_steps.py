"""A bulk job whose ranges are Dagster steps (`sharded_bulk_job`): the outcomes, counters and audit of one bulk job."""

from __future__ import annotations

import collections
import os
import threading
import uuid

import dagster as dg
import pytest

from connectors.store import RecordStore, bulk, schema
from connectors.store.bulk import ranges
from pipelines import runs
from pipelines.bulk import launch, service
from pipelines.bulk.sharded import sharded_bulk_job
from pipelines.definitions import defs
from tests.bulk.conftest import Seeder, archive_job
from tests.faults import row_locked, wait_for

# each runs a Dagster job of six or more steps: seconds, not the fast tier's milliseconds
pytestmark = pytest.mark.slow

COUNTERS = ("status", "total_count", "processed_count", "failed_count", "skipped_count")


def run_config(job_id: uuid.UUID, store_url: str, *, parallel: int = 3, batch_size: int = 40) -> dict:
    return {
        "ops": {
            "plan_bulk_job_ranges": {
                "config": {"bulk_job_id": str(job_id), "parallel": parallel, "batch_size": batch_size}
            }
        },
        "resources": {"record_store": {"config": {"database_url": store_url}}},
    }


def mixed_ids(seed: Seeder) -> list[uuid.UUID]:
    # 480 to archive, 15 already archived, 5 that do not exist (failed)
    return seed.applications(480) + seed.applications(15, status="archived") + [uuid.uuid4() for _ in range(5)]


def counters(store, account: uuid.UUID, job_id: uuid.UUID) -> tuple:
    job = service.get_job(store, account, job_id)
    return tuple(job[c] for c in COUNTERS)


def outcomes(seed: Seeder, job_id: uuid.UUID) -> list[tuple]:
    return [(i.status, i.error) for i in seed.items(job_id)]


def audit_per_record(seed: Seeder, job_id: uuid.UUID) -> collections.Counter:
    return collections.Counter(collections.Counter(a.entity_id for a in seed.audit(job_id)).values())


def steps(result, event: dg.DagsterEventType) -> list[str]:
    return sorted(e.step_key for e in result.all_events if e.event_type == event)


def test_range_steps_under_the_multiprocess_executor_do_what_one_cursor_does(
    seed, store, store_url, account, instance
) -> None:
    one, many = archive_job(store, account, mixed_ids(seed)), archive_job(store, account, mixed_ids(seed))
    assert bulk.run_job(store, one, batch_size=40) == "completed"

    with dg.execute_job(
        dg.reconstructable(sharded_bulk_job), instance=instance, run_config=run_config(many, store_url)
    ) as result:
        assert result.success
        applied = [result.output_for_node("apply_bulk_job_range")[f"range_{k}"] for k in range(3)]
        assert steps(result, dg.DagsterEventType.STEP_SUCCESS) == [
            "apply_bulk_job_range[range_0]",
            "apply_bulk_job_range[range_1]",
            "apply_bulk_job_range[range_2]",
            "deliver_bulk_job_webhooks",
            "finish_bulk_job_ranges",
            "plan_bulk_job_ranges",
        ]

    assert counters(store, account, many) == counters(store, account, one) == ("completed", 500, 500, 5, 0)
    assert outcomes(seed, many) == outcomes(seed, one)
    assert audit_per_record(seed, many) == audit_per_record(seed, one) == {1: 495}
    # three step processes, none of them this one; each applied its third of the records
    assert len({a["worker"]["pid"] for a in applied} | {os.getpid()}) == 4
    assert [a["counts"]["processed"] for a in applied] == [167, 167, 166]
    job = service.get_job(store, account, many)
    assert job["summary"]["ranges"] == [
        {"lo": 0, "hi": 167, "next": 167},
        {"lo": 167, "hi": 334, "next": 334},
        {"lo": 334, "hi": 500, "next": 500},
    ]


def test_a_relaunch_resumes_only_the_unfinished_ranges(seed, store, store_url, account, instance) -> None:
    one, many = archive_job(store, account, mixed_ids(seed)), archive_job(store, account, mixed_ids(seed))
    assert bulk.run_job(store, one, batch_size=40) == "completed"
    # a first run split the bulk job in 3 ranges, applied range 1 whole and 2 batches of range 0, then was killed
    started = ranges.plan_ranges(store, many, 3)
    assert started is not None and started.unfinished() == [0, 1, 2]
    ranges.run_range(store, many, 1, 40)
    batches: list[bulk.BatchResult] = []
    ranges.run_range(store, many, 0, 40, on_batch=batches.append, should_stop=lambda: len(batches) >= 2)
    assert service.get_job(store, account, many)["status"] == "processing"

    # parallel: 5 now, but a bulk job already split keeps its ranges
    result = sharded_bulk_job.execute_in_process(run_config=run_config(many, store_url, parallel=5), instance=instance)

    assert result.success
    assert [s for s in steps(result, dg.DagsterEventType.STEP_SUCCESS) if s.startswith("apply")] == [
        "apply_bulk_job_range[range_0]",
        "apply_bulk_job_range[range_2]",
    ]
    # range 0 went on after its 80 records: 87 more in 3 batches
    resumed = result.output_for_node("apply_bulk_job_range")["range_0"]["counts"]
    assert (resumed["processed"], resumed["batches"]) == (87, 3)
    assert counters(store, account, many) == counters(store, account, one) == ("completed", 500, 500, 5, 0)
    assert outcomes(seed, many) == outcomes(seed, one)
    # no record changed twice
    assert audit_per_record(seed, many) == {1: 495}


@pytest.mark.parametrize("parallel", [1, 3], ids=["split-by-an-earlier-run", "created-with-parallel"])
def test_launching_a_bulk_job_of_ranges_again_resumes_it_as_the_ranged_job(
    seed, store, store_url, account, instance, parallel
) -> None:
    one = archive_job(store, account, mixed_ids(seed))
    assert bulk.run_job(store, one, batch_size=40) == "completed"
    many = archive_job(store, account, mixed_ids(seed), parallel)
    # a first run split it in 3 ranges, applied range 1 whole, and its run failed
    assert ranges.plan_ranges(store, many, 3) is not None
    ranges.run_range(store, many, 1, 40)
    assert bulk.finish_job(store, many, "failed", error="its run worker was killed")

    run_id = launch.launch_bulk_job(many, database_url=store_url, instance=instance, batch_size=40)

    assert runs.wait_for_run(run_id, instance=instance, timeout=300) == dg.DagsterRunStatus.SUCCESS
    run = instance.get_run_by_id(run_id)
    assert (run.job_name, run.tags["bulkops/parallel"]) == ("sharded_bulk_job", "3")
    assert counters(store, account, many) == counters(store, account, one) == ("completed", 500, 500, 5, 0)
    assert outcomes(seed, many) == outcomes(seed, one)
    assert audit_per_record(seed, many) == {1: 495}
    job = service.get_job(store, account, many)
    assert (job["parallel"], job["dagster_run_id"], job["error_message"]) == (3, run_id, None)


def test_a_cancel_stops_every_range(seed, store, store_url, account, instance) -> None:
    job_id = archive_job(store, account, mixed_ids(seed))
    started = ranges.plan_ranges(store, job_id, 3)
    assert started is not None
    ranges.run_range(
        store, job_id, 0, 40, should_stop=lambda: service.get_job(store, account, job_id)["processed_count"] >= 40
    )
    service.request_cancel(store, account, job_id)

    result = sharded_bulk_job.execute_in_process(run_config=run_config(job_id, store_url), instance=instance)

    assert result.success
    job = service.get_job(store, account, job_id)
    assert (job["status"], job["processed_count"]) == ("cancelled", 40)
    assert [r["next"] for r in job["summary"]["ranges"]] == [40, 167, 334]
    assert [i.status for i in seed.items(job_id)].count("pending") == 460
    assert sum(audit_per_record(seed, job_id).values()) == 40
    # every range step stopped at once, without a batch
    for k in range(3):
        assert result.output_for_node("apply_bulk_job_range")[f"range_{k}"]["counts"]["batches"] == 0


def test_a_relaunch_after_every_range_was_applied_only_ends_the_bulk_job(
    seed, store, store_url, account, instance
) -> None:
    job_id = archive_job(store, account, mixed_ids(seed))
    # a first run applied every range, then was killed before its finish step
    assert ranges.plan_ranges(store, job_id, 2) is not None
    for k in range(2):
        ranges.run_range(store, job_id, k, 100)
    assert service.get_job(store, account, job_id)["status"] == "processing"

    result = sharded_bulk_job.execute_in_process(run_config=run_config(job_id, store_url), instance=instance)

    assert result.success
    assert steps(result, dg.DagsterEventType.STEP_SUCCESS) == [
        "deliver_done_bulk_job_webhooks",
        "plan_bulk_job_ranges",
    ]
    assert counters(store, account, job_id) == ("completed", 500, 500, 5, 0)
    assert audit_per_record(seed, job_id) == {1: 495}


def test_a_bulk_job_awaiting_confirmation_is_only_reported(seed, store, store_url, account, instance) -> None:
    job = service.create_job(
        store,
        account,
        created_by=None,
        entity_type="applications",
        operation="status_update",
        params={"status": "archived"},
        entity_ids=seed.applications(5),
        mode="preview",
    )
    job_id = uuid.UUID(job["id"])

    result = sharded_bulk_job.execute_in_process(run_config=run_config(job_id, store_url), instance=instance)

    assert result.success
    assert steps(result, dg.DagsterEventType.STEP_SUCCESS) == [
        "deliver_done_bulk_job_webhooks",
        "plan_bulk_job_ranges",
    ]
    after = service.get_job(store, account, job_id)
    assert (after["status"], after["processed_count"], "ranges" in after["summary"]) == ("pending", 0, False)
    assert seed.audit(job_id) == []


@pytest.mark.postgres
def test_a_cancel_while_the_range_steps_run_stops_every_one_with_exact_counts(pg_url, tmp_path, instance) -> None:
    store = RecordStore(pg_url)
    try:
        account = store.ensure_account(f"t-{uuid.uuid4().hex[:10]}")
        seed = Seeder(store, account)
        ids = seed.applications(500)
        job_id = archive_job(store, account, ids)
        done: dict[str, bool] = {}

        def execute() -> None:
            with dg.execute_job(
                dg.reconstructable(sharded_bulk_job), instance=instance, run_config=run_config(job_id, pg_url)
            ) as result:
                done["success"] = result.success

        # range 1 (items 167..333) waits on its 34th record, inside its first batch (167..206)
        with row_locked(store, schema.applications, ids[200]) as lock:
            runner = threading.Thread(target=execute)
            runner.start()
            try:
                wait_for(lock.waiters, "range 1 to wait on the held record", alive=runner.is_alive)
                service.request_cancel(store, account, job_id)
            finally:
                lock.release()
        runner.join(timeout=300)

        assert done == {"success": True}
        job = service.get_job(store, account, job_id)
        assert job["status"] == "cancelled"
        # range 1's batch committed before the cancel ended the bulk job, or was undone; then it stopped
        assert job["summary"]["ranges"][1]["next"] in (167, 207)
        changed = [i for i in seed.items(job_id) if i.status != "pending"]
        assert job["processed_count"] == len(changed) == len(seed.audit(job_id)) < 500
        assert audit_per_record(seed, job_id) == {1: len(changed)}
        assert sum(r["next"] - r["lo"] for r in job["summary"]["ranges"]) == len(changed)
    finally:
        store.dispose()


def test_bulk_job_refuses_a_bulk_job_split_in_ranges(seed, store, store_url, account, instance) -> None:
    job_id = archive_job(store, account, seed.applications(10))
    assert ranges.plan_ranges(store, job_id, 2) is not None
    ranges.run_range(store, job_id, 0, 2)

    result = defs.resolve_job_def("bulk_job").execute_in_process(
        run_config={
            "ops": {"apply_bulk_job": {"config": {"bulk_job_id": str(job_id), "batch_size": 2}}},
            "resources": {"record_store": {"config": {"database_url": store_url}}},
        },
        instance=instance,
        raise_on_error=False,
    )

    assert not result.success
    (failure,) = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
    assert "split in ranges: run it with sharded_bulk_job" in failure.step_failure_data.error.message
    # one cursor would have started at 0 again: range 0's records are changed once
    assert service.get_job(store, account, job_id)["processed_count"] == 5
    assert audit_per_record(seed, job_id) == {1: 5}


@pytest.mark.postgres
def test_terminating_a_launched_run_cancels_every_range_with_exact_counts(pg_url, instance) -> None:
    store = RecordStore(pg_url)
    try:
        account = store.ensure_account(f"t-{uuid.uuid4().hex[:10]}")
        seed = Seeder(store, account)
        ids = seed.applications(500)
        job_id = archive_job(store, account, ids)
        # range 1 (items 167..333) waits on a record of its first batch (167..206)
        with row_locked(store, schema.applications, ids[200]) as lock:
            run_id = runs.launch_run(
                "sharded_bulk_job", run_config=run_config(job_id, pg_url), tags={}, instance=instance
            )
            try:
                wait_for(lock.waiters, "range 1 to wait on the held record")
                assert runs.terminate_run(run_id, instance=instance)
            finally:
                lock.release()
        assert runs.wait_for_run(run_id, instance=instance, timeout=300) == dg.DagsterRunStatus.CANCELED

        job = service.get_job(store, account, job_id)
        assert job["status"] == "cancelled"
        # the batch range 1 was in commits whole or not at all; every committed batch is counted once
        assert job["summary"]["ranges"][1]["next"] in (167, 207)
        changed = [i for i in seed.items(job_id) if i.status != "pending"]
        assert job["processed_count"] == len(changed) == len(seed.audit(job_id)) < 500
        assert sum(r["next"] - r["lo"] for r in job["summary"]["ranges"]) == len(changed)
    finally:
        store.dispose()


@pytest.mark.postgres
def test_a_batch_that_outlives_the_cancel_of_its_bulk_job_is_undone(pg_url) -> None:
    store = RecordStore(pg_url)
    try:
        account = store.ensure_account(f"t-{uuid.uuid4().hex[:10]}")
        seed = Seeder(store, account)
        ids = seed.applications(20)
        job_id = archive_job(store, account, ids)
        assert ranges.plan_ranges(store, job_id, 2) is not None
        got: dict[str, object] = {}
        # range 1's batch (items 10..14) waits on a record while range 0 ends the bulk job cancelled
        with row_locked(store, schema.applications, ids[12]) as lock:
            batch = threading.Thread(target=lambda: got.update(r=ranges.process_range_batch(store, job_id, 1, 5)))
            batch.start()
            try:
                wait_for(lock.waiters, "range 1's batch to wait on the held record", alive=batch.is_alive)
                service.request_cancel(store, account, job_id)
                assert ranges.process_range_batch(store, job_id, 0, 5).job_status == "cancelled"
            finally:
                lock.release()
            batch.join(timeout=60)

        assert got == {"r": None}
        job = service.get_job(store, account, job_id)
        assert (job["status"], job["processed_count"]) == ("cancelled", 0)
        assert [r["next"] for r in job["summary"]["ranges"]] == [0, 10]
        assert [i.status for i in seed.items(job_id)] == ["pending"] * 20
        assert seed.audit(job_id) == []
        assert {r.status for r in seed.rows(schema.applications, ids).values()} == {"active"}
    finally:
        store.dispose()


def test_ranges_beyond_the_limit_fail_the_run_before_any_record_is_touched(
    seed, store, store_url, account, instance
) -> None:
    ids = seed.applications(5)
    job_id = archive_job(store, account, ids)

    result = sharded_bulk_job.execute_in_process(
        run_config=run_config(job_id, store_url, parallel=40), instance=instance, raise_on_error=False
    )

    assert not result.success
    [failure] = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
    assert "parallel" in str(failure.step_failure_data.error) and "less than or equal to 16" in str(
        failure.step_failure_data.error
    )
    after = service.get_job(store, account, job_id)
    assert (after["status"], after["processed_count"]) == ("pending", 0)
    assert seed.audit(job_id) == []
