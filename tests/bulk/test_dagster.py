"""The bulk job under Dagster: progress, cancellation, resume after a kill, reconciliation, launch."""

from __future__ import annotations

import time
import uuid

import dagster as dg
import pytest
import sqlalchemy as sa

from connectors.store import schema
from pipelines.bulk import launch, service
from pipelines.bulk.sensors import bulk_job_canceled_sensor, bulk_job_failure_sensor
from pipelines.definitions import defs
from resources import RecordStoreResource


@pytest.fixture
def bulk_job_def(store_url: str) -> dg.JobDefinition:
    return defs.resolve_job_def("bulk_job")


def _execute(job_def, instance, store_url, job_id, batch_size=2, tags=None) -> dg.ExecuteInProcessResult:
    return job_def.execute_in_process(
        run_config=launch.run_config_for(job_id, store_url, batch_size),
        instance=instance,
        raise_on_error=False,
        tags=tags,
    )


def _create(store, account, ids, **kwargs) -> uuid.UUID:
    kwargs.setdefault("entity_type", "applications")
    kwargs.setdefault("operation", "status_update")
    kwargs.setdefault("params", {"status": "archived"})
    return uuid.UUID(service.create_job(store, account, created_by=None, entity_ids=ids, **kwargs)["id"])


def test_bulk_job_run_reports_progress_and_outcomes(seed, store, store_url, account, instance, bulk_job_def) -> None:
    ids = seed.applications(5)
    job_id = _create(store, account, ids)
    result = _execute(bulk_job_def, instance, store_url, job_id)
    assert result.success
    job = service.get_job(store, account, job_id)
    assert (job["status"], job["processed_count"], job["dagster_run_id"]) == ("completed", 5, result.run_id)
    observations = [e for e in result.all_events if e.event_type_value == "ASSET_OBSERVATION"]
    assert [o.asset_observation_data.asset_observation.metadata["processed_count"].value for o in observations] == [
        2,
        4,
        5,
    ]
    out = next(
        e for e in result.all_events if e.event_type_value == "STEP_OUTPUT" and e.step_key == "apply_bulk_job"
    ).step_output_data.metadata
    assert out["processed_count"].value == 5 and len(out["changes (first 100)"].value.records) == 5


def test_preview_job_run_shows_plan_table_and_changes_nothing(
    seed, store, store_url, account, instance, bulk_job_def
) -> None:
    ids = seed.applications(3)
    job_id = _create(store, account, ids, mode="preview")
    result = _execute(bulk_job_def, instance, store_url, job_id)
    assert result.success
    out = next(
        e for e in result.all_events if e.event_type_value == "STEP_OUTPUT" and e.step_key == "apply_bulk_job"
    ).step_output_data.metadata
    assert len(out["preview"].value.records) == 3 and out["would_change"].value == 3
    assert {r.status for r in seed.rows(schema.applications, ids).values()} == {"active"}
    assert service.get_job(store, account, job_id)["status"] == "pending"


def test_terminal_error_fails_the_job_without_retry(store, store_url, account, instance, bulk_job_def) -> None:
    result = _execute(bulk_job_def, instance, store_url, uuid.uuid4())
    assert not result.success
    assert not [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]


def _evaluate(sensor, context) -> None:
    with context if sensor is bulk_job_canceled_sensor else context.for_run_failure() as ctx:
        sensor(ctx)


@pytest.mark.parametrize(
    ("sensor", "expected"),
    [
        pytest.param(bulk_job_failure_sensor, "failed", id="failure"),
        pytest.param(bulk_job_canceled_sensor, "cancelled", id="canceled"),
    ],
)
def test_reconciliation_sensor_finishes_jobs_left_processing(
    seed, store, store_url, account, instance, bulk_job_def, sensor, expected
) -> None:
    job_id = _create(store, account, seed.applications(2))
    # a run that died before it could record anything on its job
    result = _execute(bulk_job_def, instance, store_url, uuid.uuid4(), tags={"bulkops/bulk_job_id": str(job_id)})
    assert not result.success
    with store.begin() as conn:
        conn.execute(
            schema.bulk_jobs.update()
            .where(schema.bulk_jobs.c.id == job_id)
            .values(status="processing", dagster_run_id=result.run_id)
        )
    context = dg.build_run_status_sensor_context(
        sensor_name=sensor.name,
        dagster_event=result.get_run_failure_event(),
        dagster_instance=instance,
        dagster_run=result.dagster_run,
        resources={"record_store": RecordStoreResource(database_url=store_url)},
    )
    _evaluate(sensor, context)
    job = service.get_job(store, account, job_id)
    assert job["status"] == expected
    if expected == "failed":
        assert result.run_id in job["error_message"]
    # a job another run took over is left alone
    other = _create(store, account, seed.applications(1))
    with store.begin() as conn:
        conn.execute(
            schema.bulk_jobs.update()
            .where(schema.bulk_jobs.c.id == other)
            .values(status="processing", dagster_run_id="another-run")
        )
    context = dg.build_run_status_sensor_context(
        sensor_name=sensor.name,
        dagster_event=result.get_run_failure_event(),
        dagster_instance=instance,
        dagster_run=result.dagster_run.with_tags({"bulkops/bulk_job_id": str(other)}),
        resources={"record_store": RecordStoreResource(database_url=store_url)},
    )
    _evaluate(sensor, context)
    assert service.get_job(store, account, other)["status"] == "processing"


def test_launch_runs_the_job_in_the_instance(seed, store, store_url, account, instance) -> None:
    ids = seed.applications(3)
    job_id = _create(store, account, ids)
    run_id = launch.launch_bulk_job(job_id, database_url=store_url, instance=instance)
    assert service.get_job(store, account, job_id)["dagster_run_id"] == run_id
    assert launch.wait_for_local_run(run_id, timeout=120) == 0
    assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.SUCCESS
    job = service.get_job(store, account, job_id)
    assert (job["status"], job["processed_count"]) == ("completed", 3)


@pytest.mark.postgres
def test_terminating_a_launched_run_cancels_between_batches(pg_url, instance) -> None:
    from connectors.store import RecordStore
    from tests.bulk.conftest import Seeder

    store = RecordStore(pg_url)
    account = store.ensure_account(f"t-{uuid.uuid4().hex[:10]}")
    seed = Seeder(store, account)
    ids = seed.applications(10)
    job_id = _create(store, account, ids)
    # hold a lock on the 7th record: the run commits three batches of two, then waits on it
    blocker = store.engine.connect()
    tx = blocker.begin()
    blocker.execute(sa.select(schema.applications.c.id).where(schema.applications.c.id == ids[6]).with_for_update())
    try:
        run_id = launch.launch_bulk_job(job_id, database_url=pg_url, instance=instance, batch_size=2)
        deadline = time.monotonic() + 120
        while service.get_job(store, account, job_id)["processed_count"] < 6 or not instance.get_run_by_id(
            run_id
        ).tags.get(launch.PID_TAG):
            assert time.monotonic() < deadline, "run did not reach the locked record"
            time.sleep(0.1)
        assert launch.terminate_bulk_job_run(run_id, instance=instance)
        # the interrupt lands while the batch waits on the lock; that batch must roll back
        tx.rollback()
        launch.wait_for_local_run(run_id, timeout=120)
    finally:
        if tx.is_active:
            tx.rollback()
        blocker.close()
    job = service.get_job(store, account, job_id)
    assert (job["status"], job["processed_count"]) == ("cancelled", 6)
    assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.CANCELED
    assert len(seed.audit(job_id)) == 6
    rows = seed.rows(schema.applications, ids)
    assert [rows[i].status for i in ids] == ["archived"] * 6 + ["active"] * 4
    store.dispose()
