"""Sensors that keep import_history in step with Dagster's run history, and find dead runs."""

from typing import Any

import dagster as dg

from connectors.store.imports import finish_run_imports
from pipelines.documents.assets import document_import_job
from pipelines.imports.jobs import SHARDED_IMPORT_JOBS, import_job
from pipelines.imports.shared import RESUMES_TAG, resume_request, shared_import_job, unreached_files
from pipelines.instance import reap_dead_runs
from pipelines.run_end import run_end_sensors


def _finish(store: Any, run: dg.DagsterRun, status: str, error: str | None) -> str:
    ended = finish_run_imports(store, run.run_id, status, error or "")
    return f"{ended} import(s) marked {status}"


import_failure_sensor, import_canceled_sensor = run_end_sensors(
    name="import",
    job=[import_job, shared_import_job, *SHARDED_IMPORT_JOBS, document_import_job],
    group="imports",
    finish=_finish,
    on_failure=(
        "Ends the import-history row of a failed import, shared, sharded or document import run `failed` with the run's reason "
        "(retries exhausted, run worker crashed, process gone), so no row stays processing; a re-run resumes after "
        "its committed batches."
    ),
    on_cancel=(
        "Ends the import-history row of a cancelled import, shared, sharded or document import run `cancelled` when "
        "the import could not record it."
    ),
    cancel_error=lambda run: f"Dagster run {run.run_id} was terminated; a re-run resumes",
)


@dg.run_status_sensor(
    name="shared_import_canceled_sensor",
    description=(
        "When a shared import run is terminated, requests a new shared run for the dropped files it had not reached "
        "(still in the drop folder, not imported), so they are imported without re-executing the run. The file it "
        "was importing stays cancelled (a re-run of its partition resumes it); a terminated run this sensor "
        "requested is not requested again, so terminating twice stops."
    ),
    run_status=dg.DagsterRunStatus.CANCELED,
    monitored_jobs=[shared_import_job],
    request_job=shared_import_job,
    default_status=dg.DefaultSensorStatus.RUNNING,
    tags={"bulkops/group": "imports"},
)
def shared_import_canceled_sensor(context: dg.RunStatusSensorContext) -> dg.RunRequest | dg.SkipReason:
    run = context.dagster_run
    if RESUMES_TAG in run.tags:
        return dg.SkipReason(f"run {run.run_id} resumed run {run.tags[RESUMES_TAG]} and was terminated too")
    files = unreached_files(context.instance, run)
    if not files:
        return dg.SkipReason(f"run {run.run_id} left no file it had not reached")
    context.log.info(f"run {run.run_id} was terminated before {len(files)} file(s): requesting a run for them")
    return resume_request(run, files)


@dg.sensor(
    name="dead_run_sensor",
    description=(
        "Marks failed every started import, bulk-job or sync run whose process on this host is gone (killed with -9, "
        "its deployment stopped), naming the pid; the failure sensors then end its import, bulk job or sync run."
    ),
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    tags={"bulkops/group": "imports"},
)
def dead_run_sensor(context: dg.SensorEvaluationContext) -> dg.SkipReason:
    reaped = reap_dead_runs(context.instance)
    return dg.SkipReason(f"marked failed: {', '.join(reaped)}" if reaped else "no dead runs")
