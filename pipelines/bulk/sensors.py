"""Sensors that keep bulk_jobs in step with Dagster's run history."""

import uuid
from typing import Any

import dagster as dg

from connectors import settings
from connectors.store import bulk
from pipelines.bulk.by_filter import bulk_operation_job
from pipelines.bulk.jobs import RANGED_BULK_JOBS, bulk_job
from pipelines.run_end import run_end_sensors
from resources import RecordStoreResource

# the steps whose config names the run's bulk job: bulk_job's, and the ranged jobs' planning step
CONFIGURED_STEPS = ("apply_bulk_job", "plan_bulk_job_ranges")


def bulk_job_id_of(run: dg.DagsterRun) -> uuid.UUID | None:
    """The bulk job a run applies: its `bulkops/bulk_job_id` tag, else its step config's `bulk_job_id`."""
    tag = run.tags.get("bulkops/bulk_job_id")
    ops = (run.run_config or {}).get("ops", {})
    for step in CONFIGURED_STEPS:
        if tag is None:
            tag = ((ops.get(step) or {}).get("config") or {}).get("bulk_job_id")
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


def _finish(store: Any, run: dg.DagsterRun, status: str, error: str | None) -> str:
    return f"bulk job {'marked ' + status if reconcile(store, run, status, error) else 'already final'}"


bulk_job_failure_sensor, bulk_job_canceled_sensor = run_end_sensors(
    name="bulk_job",
    job=[bulk_job, bulk_operation_job, *RANGED_BULK_JOBS],
    group="bulk",
    finish=_finish,
    on_failure=(
        "Marks a bulk job failed when its run (one cursor or ranges) failed or its run worker crashed, so it never "
        "stays processing."
    ),
    on_cancel=(
        "Marks a bulk job cancelled when its run (one cursor or ranges) was cancelled before the bulk job could "
        "record it itself."
    ),
)


@dg.sensor(
    name="expired_previews_sensor",
    minimum_interval_seconds=300,
    description=(
        "Cancels the bulk job previews nobody executed within BULKOPS_PREVIEW_TTL_HOURS (default 24) of their plan, "
        "so none stays pending: listings and statistics show them cancelled, 'preview expired'."
    ),
    default_status=dg.DefaultSensorStatus.RUNNING,
    tags={"bulkops/group": "bulk"},
)
def expired_previews_sensor(context: dg.SensorEvaluationContext, record_store: RecordStoreResource) -> dg.SkipReason:
    hours = settings.preview_ttl_hours()
    expired = bulk.expire_previews(record_store.store, ttl_hours=hours)
    return dg.SkipReason(f"{expired} preview(s) older than {hours:g} h cancelled")
