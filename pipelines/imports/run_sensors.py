"""Sensors that keep import_history in step with Dagster's run history, and find dead runs."""

import dagster as dg

from connectors.store.imports import finish_run_imports
from pipelines.imports.jobs import import_job
from pipelines.instance import reap_dead_runs
from resources import RecordStoreResource


@dg.run_failure_sensor(
    name="import_failure_sensor",
    description=(
        "Ends the import-history row of a failed import run `failed` with the run's reason (retries exhausted, "
        "run worker crashed, process gone), so no row stays processing; a re-run resumes after its committed batches."
    ),
    monitored_jobs=[import_job],
    default_status=dg.DefaultSensorStatus.RUNNING,
    tags={"bulkops/group": "imports"},
)
def import_failure_sensor(context: dg.RunFailureSensorContext, record_store: RecordStoreResource) -> None:
    run = context.dagster_run
    message = context.failure_event.message or "run failed"
    ended = finish_run_imports(record_store.store, run.run_id, "failed", f"Dagster run {run.run_id} failed: {message}")
    context.log.info(f"run {run.run_id}: {ended} import(s) marked failed")


@dg.run_status_sensor(
    name="import_canceled_sensor",
    description="Ends the import-history row of a cancelled import run `cancelled` when the import could not record it.",
    run_status=dg.DagsterRunStatus.CANCELED,
    monitored_jobs=[import_job],
    default_status=dg.DefaultSensorStatus.RUNNING,
    tags={"bulkops/group": "imports"},
)
def import_canceled_sensor(context: dg.RunStatusSensorContext, record_store: RecordStoreResource) -> None:
    run = context.dagster_run
    ended = finish_run_imports(
        record_store.store, run.run_id, "cancelled", f"Dagster run {run.run_id} was terminated; a re-run resumes"
    )
    context.log.info(f"run {run.run_id}: {ended} import(s) marked cancelled")


@dg.sensor(
    name="dead_run_sensor",
    description=(
        "Marks failed every started import or bulk-job run whose process on this host is gone (killed with -9, "
        "its deployment stopped), naming the pid; the failure sensors then end its import or bulk job."
    ),
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    tags={"bulkops/group": "imports"},
)
def dead_run_sensor(context: dg.SensorEvaluationContext) -> dg.SkipReason:
    reaped = reap_dead_runs(context.instance)
    return dg.SkipReason(f"marked failed: {', '.join(reaped)}" if reaped else "no dead runs")
