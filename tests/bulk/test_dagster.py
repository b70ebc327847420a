"""The bulk job under Dagster: progress, reconciliation, and faults from outside a launched run.

Launched runs go through Dagster's run launcher as the product launches them (`launch_bulk_job`);
faults come from outside: Terminate, kill -9 of the run's processes, a database backend killed
under the run. On PostgreSQL a record held `FOR UPDATE` by the test stops the run at a known batch
(tests/faults.py), without timing assumptions.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterator

import dagster as dg
import pytest
import sqlalchemy as sa

from connectors.store import RecordStore, schema
from pipelines import runs
from pipelines.bulk import launch, service
from pipelines.bulk.sensors import bulk_job_canceled_sensor, bulk_job_failure_sensor, bulk_job_id_of
from pipelines.definitions import defs
from resources import RecordStoreResource
from tests.bulk.conftest import Seeder
from tests.faults import WAIT_S, kill_run, process_gone, row_locked, run_pids, wait_for, zombie_children


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


def _tick(sensor, instance: dg.DagsterInstance, store_url: str, cursor: str | None) -> str | None:
    """One tick of SENSOR as the daemon evaluates it (runs of jobs it does not watch are passed over); its cursor."""
    resources = {"record_store": RecordStoreResource(database_url=store_url)}
    with dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources) as context:
        return sensor.evaluate_tick(context).cursor


def _processing(store: RecordStore, job_id: uuid.UUID, run_id: str) -> None:
    with store.begin() as conn:
        conn.execute(
            schema.bulk_jobs.update()
            .where(schema.bulk_jobs.c.id == job_id)
            .values(status="processing", dagster_run_id=run_id)
        )


@pytest.mark.parametrize("parallel", [1, 4], ids=["bulk_job", "sharded_bulk_job"])
def test_the_bulk_job_of_a_run_launched_from_the_launchpad_is_read_from_its_config(parallel: int) -> None:
    job_id = uuid.uuid4()
    # the Launchpad sets no bulkops tag: only the step config names the bulk job
    run = dg.DagsterRun(job_name="any", run_config=launch.run_config_for(job_id, parallel=parallel))
    assert bulk_job_id_of(run) == job_id


@pytest.mark.parametrize("job_name", ["bulk_job", "sharded_bulk_job", "celery_sharded_bulk_job"])
def test_a_failed_run_of_any_bulk_job_leaves_its_bulk_job_failed_at_the_next_tick(
    seed, store, store_url, account, instance, job_name
) -> None:
    cursor = _tick(bulk_job_failure_sensor, instance, store_url, None)
    job_id = _create(store, account, seed.applications(2))
    # a run that died before it could record anything on its bulk job (its config names another one)
    result = defs.resolve_job_def(job_name).execute_in_process(
        run_config=launch.run_config_for(uuid.uuid4(), store_url, 2, parallel=1 if job_name == "bulk_job" else 2),
        instance=instance,
        raise_on_error=False,
        tags={"bulkops/bulk_job_id": str(job_id)},
    )
    assert not result.success and result.dagster_run.job_name == job_name
    _processing(store, job_id, result.run_id)

    _tick(bulk_job_failure_sensor, instance, store_url, cursor)

    job = service.get_job(store, account, job_id)
    assert job["status"] == "failed"
    assert f"Dagster run {result.run_id} failed" in job["error_message"]


@pytest.mark.parametrize("job_name", ["bulk_job", "sharded_bulk_job", "celery_sharded_bulk_job", "export_job"])
def test_a_cancelled_run_of_any_bulk_job_leaves_its_bulk_job_cancelled_at_the_next_tick(
    seed, store, store_url, account, instance, job_name
) -> None:
    cursor = _tick(bulk_job_canceled_sensor, instance, store_url, None)
    job_id = _create(store, account, seed.applications(2))
    # a run terminated before its step could record it on its bulk job
    run = instance.add_run(
        dg.DagsterRun(
            job_name=job_name,
            run_id=str(uuid.uuid4()),
            status=dg.DagsterRunStatus.STARTED,
            tags={"bulkops/bulk_job_id": str(job_id)},
        )
    )
    _processing(store, job_id, run.run_id)
    instance.report_run_canceled(run, "terminated")

    _tick(bulk_job_canceled_sensor, instance, store_url, cursor)

    # a run of a job that applies no bulk job is none of the sensor's business
    expected = "processing" if job_name == "export_job" else "cancelled"
    assert service.get_job(store, account, job_id)["status"] == expected


def _on_job_page(instance: dg.DagsterInstance, run_id: str) -> bool:
    """Whether the UI's Runs page of `bulk_job` lists RUN_ID (it filters on the repository tag)."""
    records = instance.get_run_records(
        filters=dg.RunsFilter(job_name="bulk_job", tags={runs.REPOSITORY_TAG: runs.repository_label()})
    )
    return run_id in {r.dagster_run.run_id for r in records}


def test_a_launched_run_goes_through_the_run_launcher_and_leaves_no_process(
    seed, store, store_url, account, instance
) -> None:
    ids = seed.applications(3)
    job_id = _create(store, account, ids)
    run_id = launch.launch_bulk_job(job_id, database_url=store_url, instance=instance)
    assert service.get_job(store, account, job_id)["dagster_run_id"] == run_id
    assert launch.wait_for_bulk_job_run(run_id, instance=instance, timeout=WAIT_S) == dg.DagsterRunStatus.SUCCESS
    job = service.get_job(store, account, job_id)
    assert (job["status"], job["processed_count"]) == ("completed", 3)
    assert _on_job_page(instance, run_id)
    # the run worker was Dagster's, in a process of its own; nothing of ours is left to reap
    assert os.getpid() not in run_pids(instance, run_id)
    assert zombie_children() == []


@pytest.fixture
def pg(pg_url: str) -> Iterator[tuple[RecordStore, uuid.UUID, Seeder]]:
    store = RecordStore(pg_url)
    account = store.ensure_account(f"t-{uuid.uuid4().hex[:10]}")
    yield store, account, Seeder(store, account)
    store.dispose()


@pytest.mark.postgres
def test_terminating_a_launched_run_cancels_with_exact_counts(pg_url, pg, instance) -> None:
    store, account, seed = pg
    ids = seed.applications(10)
    job_id = _create(store, account, ids)
    # the 7th record held: the run commits three batches of two, then waits on it
    with row_locked(store, schema.applications, ids[6]) as lock:
        run_id = launch.launch_bulk_job(job_id, database_url=pg_url, instance=instance, batch_size=2)
        try:
            wait_for(lock.waiters, "the run to wait on the held record")
            assert service.get_job(store, account, job_id)["processed_count"] == 6
            assert launch.terminate_bulk_job_run(run_id, instance=instance)
        finally:
            # the interrupt lands while the batch waits on the lock; that batch must roll back
            lock.release()
    assert launch.wait_for_bulk_job_run(run_id, instance=instance, timeout=WAIT_S) == dg.DagsterRunStatus.CANCELED
    job = service.get_job(store, account, job_id)
    assert (job["status"], job["processed_count"], job["failed_count"]) == ("cancelled", 6, 0)
    assert len(seed.audit(job_id)) == 6
    rows = seed.rows(schema.applications, ids)
    assert [rows[i].status for i in ids] == ["archived"] * 6 + ["active"] * 4
    assert [i.status for i in seed.items(job_id)] == ["succeeded"] * 6 + ["pending"] * 4
    # a cancelled job can be rolled back from its before-images
    assert service.create_rollback(store, account, job_id)["total_count"] == 6


@pytest.mark.postgres
def test_a_run_killed_mid_job_resumes_without_applying_twice(pg_url, pg, instance) -> None:
    store, account, seed = pg
    ids = seed.applications(10)
    job_id = _create(store, account, ids, operation="tags_add", params={"tags": ["vip"]})
    with row_locked(store, schema.applications, ids[6]) as lock:
        run_id = launch.launch_bulk_job(job_id, database_url=pg_url, instance=instance, batch_size=2)
        try:
            wait_for(lock.waiters, "the run to wait on the held record")
            pids = kill_run(instance, run_id)
            wait_for(lambda: all(process_gone(p) for p in pids), "the run's processes to die")
        finally:
            lock.release()
    # Dagster's code server saw its run worker die
    assert launch.wait_for_bulk_job_run(run_id, instance=instance, timeout=WAIT_S) == dg.DagsterRunStatus.FAILURE
    half = service.get_job(store, account, job_id)
    assert (half["status"], half["processed_count"]) == ("processing", 6)
    assert len(seed.audit(job_id)) == 6

    again = launch.launch_bulk_job(job_id, database_url=pg_url, instance=instance, batch_size=2)

    assert launch.wait_for_bulk_job_run(again, instance=instance, timeout=WAIT_S) == dg.DagsterRunStatus.SUCCESS
    job = service.get_job(store, account, job_id)
    assert (job["status"], job["processed_count"], job["failed_count"]) == ("completed", 10, 0)
    audit = seed.audit(job_id)
    assert sorted(a.entity_id for a in audit) == sorted(ids)
    assert all(seed.tags("applications", i) == ["vip"] for i in ids)
    assert [i.status for i in seed.items(job_id)] == ["succeeded"] * 10


@pytest.mark.postgres
def test_a_killed_database_connection_is_retried_and_the_job_finishes_exactly(
    pg_url, pg, instance, bulk_job_def
) -> None:
    store, account, seed = pg
    ids = seed.applications(10)
    job_id = _create(store, account, ids)
    killed: list[int] = []
    with row_locked(store, schema.applications, ids[6]) as lock:

        def kill_the_waiting_backend() -> None:
            try:
                [waiter] = wait_for(lock.waiters, "the run to wait on the held record")
                with store.engine.connect() as c:
                    assert c.execute(sa.text("SELECT pg_terminate_backend(:p)"), {"p": waiter}).scalar()
                killed.append(waiter)
            finally:
                # the fault clears: the retry finds the record free
                lock.release()

        fault = threading.Thread(target=kill_the_waiting_backend)
        fault.start()
        try:
            result = _execute(bulk_job_def, instance, pg_url, job_id)
        finally:
            fault.join()
    assert killed and result.success
    retries = [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    assert len(retries) == 1
    assert "terminating connection due to administrator command" in str(retries[0].event_specific_data.error)
    job = service.get_job(store, account, job_id)
    assert (job["status"], job["processed_count"], job["failed_count"]) == ("completed", 10, 0)
    assert sorted(a.entity_id for a in seed.audit(job_id)) == sorted(ids)


def test_a_launch_that_fails_in_the_background_fails_the_job_with_the_reason(
    seed, store, store_url, account, tmp_path, monkeypatch
) -> None:
    home = tmp_path / "broken"
    home.mkdir()
    (home / "dagster.yaml").write_text("run_launcher:\n  module: no_such_module\n  class: NoSuchLauncher\n")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    job_id = _create(store, account, seed.applications(2))

    # what the API does: the answer does not wait for `dagster job launch`
    run_id = launch.launch_bulk_job(job_id, database_url=store_url, background=True)

    assert service.get_job(store, account, job_id)["dagster_run_id"] == run_id
    job = wait_for(
        lambda: (j := service.get_job(store, account, job_id))["status"] == "failed" and j, "the job to fail"
    )
    assert run_id in job["error_message"] and "no_such_module" in job["error_message"]
    assert zombie_children() == []
