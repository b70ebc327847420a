"""Runs that end without their import saying so: dead runs are found, and no history row stays processing."""

from __future__ import annotations

import subprocess
import sys
import uuid

import dagster as dg
import pytest
import sqlalchemy as sa

from connectors.store import RecordStore, changes, schema
from pipelines.imports.run_sensors import dead_run_sensor, import_canceled_sensor, import_failure_sensor
from pipelines.instance import PROCESS_TAG, process_id, reap_dead_runs, this_process
from resources import RecordStoreResource


def gone_process() -> str:
    """The PROCESS_TAG form of a process that ran and exited."""
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        tag = process_id(child.pid)
    finally:
        child.communicate()
    assert tag.rsplit(":", 1)[1], "the start time tells a reused pid apart"
    return tag


def started_run(instance: dg.DagsterInstance, processes: str | None, *, owner: str | None = None) -> dg.DagsterRun:
    run_id = str(uuid.uuid4())
    tags = {PROCESS_TAG: f"{processes}@{owner or run_id}"} if processes else {}
    return instance.add_run(
        dg.DagsterRun(job_name="import_job", run_id=run_id, status=dg.DagsterRunStatus.STARTED, tags=tags)
    )


def history_row(store: RecordStore, account: uuid.UUID, run_id: str, status: str = "processing") -> uuid.UUID:
    import_id = uuid.uuid4()
    with store.begin() as conn:
        changes.open_change_set(conn, id=import_id, account_id=account, kind="import")
        conn.execute(
            schema.import_history.insert().values(
                id=import_id,
                account_id=account,
                type="applications",
                file="a.csv",
                content_sha256="0" * 64,
                status=status,
                rows_committed=200,
                dagster_run_id=run_id,
            )
        )
    return import_id


def row(store: RecordStore, import_id: uuid.UUID) -> sa.Row:
    h = schema.import_history
    with store.engine.connect() as conn:
        return conn.execute(sa.select(h).where(h.c.id == import_id)).one()


def run_event(instance: dg.DagsterInstance, run_id: str, event_type: dg.DagsterEventType) -> dg.DagsterEvent:
    [record] = instance.get_records_for_run(run_id, of_type=event_type).records
    return record.event_log_entry.dagster_event


def evaluate(sensor, instance: dg.DagsterInstance, run_id: str, event: dg.DagsterEvent, store_url: str) -> None:
    context = dg.build_run_status_sensor_context(
        sensor_name=sensor.name,
        dagster_event=event,
        dagster_instance=instance,
        dagster_run=instance.get_run_by_id(run_id),
        resources={"record_store": RecordStoreResource(database_url=store_url)},
    )
    with context.for_run_failure() if sensor is import_failure_sensor else context as ctx:
        sensor(ctx)


def test_the_reaper_fails_only_runs_whose_processes_are_all_gone(instance: dg.DagsterInstance) -> None:
    dead = started_run(instance, gone_process())
    alive = started_run(instance, this_process())
    # a step process gone while its run worker lives on (between steps, while a retry waits)
    worker_alive = started_run(instance, f"{gone_process()},{this_process()}")
    both_gone = started_run(instance, f"{gone_process()},{gone_process()}")
    # a retry of a run inherits its tags: the process named is its parent's, not its own
    inherited = started_run(instance, gone_process(), owner=str(uuid.uuid4()))
    untagged = started_run(instance, None)
    elsewhere = started_run(instance, "another-host:1:1")

    result = dead_run_sensor(dg.build_sensor_context(instance=instance))

    failed = {dead.run_id, both_gone.run_id}
    assert set(result.skip_message.removeprefix("marked failed: ").split(", ")) == failed
    for run in (dead, alive, worker_alive, both_gone, inherited, untagged, elsewhere):
        status = instance.get_run_by_id(run.run_id).status
        assert status == (dg.DagsterRunStatus.FAILURE if run.run_id in failed else dg.DagsterRunStatus.STARTED)
    message = run_event(instance, dead.run_id, dg.DagsterEventType.RUN_FAILURE).message
    assert f"pid {dead.tags[PROCESS_TAG].split(':')[1]}" in message and "is gone" in message
    assert dead_run_sensor(dg.build_sensor_context(instance=instance)).skip_message == "no dead runs"


def test_a_dead_import_run_ends_its_history_row_failed_with_the_reason(
    store: RecordStore, store_url: str, account: uuid.UUID, instance: dg.DagsterInstance
) -> None:
    dead = started_run(instance, gone_process())
    other = started_run(instance, this_process())
    ended, done, unrelated = (
        history_row(store, account, dead.run_id),
        history_row(store, account, dead.run_id, "completed"),
        history_row(store, account, other.run_id),
    )
    assert reap_dead_runs(instance) == [dead.run_id]

    evaluate(
        import_failure_sensor,
        instance,
        dead.run_id,
        run_event(instance, dead.run_id, dg.DagsterEventType.RUN_FAILURE),
        store_url,
    )

    failed = row(store, ended)
    assert (failed.status, failed.rows_committed) == ("failed", 200)
    assert failed.finished_at is not None
    assert dead.run_id in failed.error_message and "is gone" in failed.error_message
    assert row(store, done).status == "completed" and row(store, done).error_message is None
    assert row(store, unrelated).status == "processing"


@pytest.mark.parametrize("status", ["failed", "cancelled"])
def test_a_run_that_ended_leaves_no_history_row_processing(
    store: RecordStore, store_url: str, account: uuid.UUID, instance: dg.DagsterInstance, status: str
) -> None:
    """Retries ran out while the database was down, or the run was cancelled before its import could say so."""
    run = started_run(instance, this_process())
    import_id = history_row(store, account, run.run_id)
    if status == "failed":
        instance.report_run_failed(run, "step failed after its retries")
        sensor, kind = import_failure_sensor, dg.DagsterEventType.RUN_FAILURE
    else:
        instance.report_run_canceled(run, "terminated")
        sensor, kind = import_canceled_sensor, dg.DagsterEventType.RUN_CANCELED

    evaluate(sensor, instance, run.run_id, run_event(instance, run.run_id, kind), store_url)

    ended = row(store, import_id)
    assert (ended.status, ended.rows_committed) == (status, 200)
    assert ended.finished_at is not None and run.run_id in ended.error_message
    if status == "failed":
        assert "after its retries" in ended.error_message


def tick(sensor, instance: dg.DagsterInstance, store_url: str, cursor: str | None) -> str | None:
    """One tick of SENSOR as the daemon evaluates it (runs of jobs it does not watch are passed over); its cursor."""
    resources = {"record_store": RecordStoreResource(database_url=store_url)}
    with dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources) as context:
        return sensor.evaluate_tick(context).cursor


@pytest.mark.parametrize("status", ["failed", "cancelled"])
@pytest.mark.parametrize(
    "job_name", ["import_job", "shared_import_job", "sharded_import_job", "celery_sharded_import_job", "export_job"]
)
def test_a_run_of_any_import_job_that_ended_leaves_no_history_row_processing_at_the_next_tick(
    store: RecordStore, store_url: str, account: uuid.UUID, instance: dg.DagsterInstance, status: str, job_name: str
) -> None:
    sensor = import_failure_sensor if status == "failed" else import_canceled_sensor
    cursor = tick(sensor, instance, store_url, None)
    run = instance.add_run(
        dg.DagsterRun(job_name=job_name, run_id=str(uuid.uuid4()), status=dg.DagsterRunStatus.STARTED)
    )
    import_id = history_row(store, account, run.run_id)
    if status == "failed":
        instance.report_run_failed(run, "a shard step's worker was killed")
    else:
        instance.report_run_canceled(run, "terminated")

    tick(sensor, instance, store_url, cursor)

    # a run of a job that imports nothing is none of the sensor's business
    assert row(store, import_id).status == ("processing" if job_name == "export_job" else status)
