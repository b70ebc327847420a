"""Sensors that keep bulk_jobs in step with Dagster's run history."""

import uuid

import dagster as dg

from connectors.store import bulk
from pipelines.bulk.jobs import bulk_job
from resources import RecordStoreResource


def bulk_job_id_of(run: dg.DagsterRun) -> uuid.UUID | None:
    tag = run.tags.get("bulkops/bulk_job_id")
    if tag is None:
        tag = ((run.run_config or {}).get("ops", {}).get("apply_bulk_job", {}).get("config", {}) or {}).get(
            "bulk_job_id"
        )
    try:
        return uuid.UUID(str(tag)) if tag else None
    except ValueError:
        return None


def reconcile(store, run: dg.DagsterRun, status: str, error: str | None) -> bool:
    """Finish the run's bulk job unless it already finished or another run took it over."""
    job_id = bulk_job_id_of(run)
    if job_id is None:
        return False
    return bulk.finish_job(store, job_id, status, error=error, only_if=("pending", "processing"), run_id=run.run_id)


@dg.run_failure_sensor(
    name="bulk_job_failure_sensor",
    description="Marks a bulk job failed when its run failed or its run worker crashed, so it never stays processing.",
    monitored_jobs=[bulk_job],
    default_status=dg.DefaultSensorStatus.RUNNING,
    tags={"bulkops/group": "bulk"},
)
def bulk_job_failure_sensor(context: dg.RunFailureSensorContext, record_store: RecordStoreResource) -> None:
    message = context.failure_event.message or "run failed"
    changed = reconcile(
        record_store.store, context.dagster_run, "failed", f"Dagster run {context.dagster_run.run_id} failed: {message}"
    )
    context.log.info(f"run {context.dagster_run.run_id}: bulk job {'marked failed' if changed else 'already final'}")


@dg.run_status_sensor(
    name="bulk_job_canceled_sensor",
    description="Marks a bulk job cancelled when its run was cancelled before the bulk job could record it itself.",
    run_status=dg.DagsterRunStatus.CANCELED,
    monitored_jobs=[bulk_job],
    default_status=dg.DefaultSensorStatus.RUNNING,
    tags={"bulkops/group": "bulk"},
)
def bulk_job_canceled_sensor(context: dg.RunStatusSensorContext, record_store: RecordStoreResource) -> None:
    changed = reconcile(record_store.store, context.dagster_run, "cancelled", None)
    context.log.info(f"run {context.dagster_run.run_id}: bulk job {'marked cancelled' if changed else 'already final'}")
