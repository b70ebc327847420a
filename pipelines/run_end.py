"""The sensors that end a capability's row when its Dagster run failed or was cancelled.

A run can end without recording it on its import-history row or bulk job (its worker crashed,
its process was killed, it was terminated between batches). `run_end_sensors` makes the pair of
sensors every capability run by a Dagster job needs, so no row stays `processing`: one on run
failure, one on run cancellation, both calling the capability's `finish(store, run, status,
error)`, which ends the run's row unless it already ended (and says what it did, for the log).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import dagster as dg

from connectors.store import RecordStore
from resources import RecordStoreResource

# finish(store, run, status, error) -> what it did, for the sensor's log
Finish = Callable[[RecordStore, dg.DagsterRun, str, str | None], str]


def run_end_sensors(
    *,
    name: str,
    job: dg.JobDefinition | Sequence[dg.JobDefinition],
    group: str,
    finish: Finish,
    on_failure: str,
    on_cancel: str,
    cancel_error: Callable[[dg.DagsterRun], str | None] = lambda _: None,
) -> tuple[dg.RunStatusSensorDefinition, dg.RunStatusSensorDefinition]:
    """(`<name>_failure_sensor`, `<name>_canceled_sensor`) for runs of JOB (or of several jobs), running by default.

    ON_FAILURE and ON_CANCEL describe them; a failed run's row gets the error "Dagster run <id>
    failed: <reason>", a cancelled run's `cancel_error(run)`.
    """

    # a job definition can be a tuple underneath: tell it by its name
    monitored = [job] if hasattr(job, "name") else list(job)

    @dg.run_failure_sensor(
        name=f"{name}_failure_sensor",
        description=on_failure,
        monitored_jobs=monitored,
        default_status=dg.DefaultSensorStatus.RUNNING,
        tags={"bulkops/group": group},
    )
    def failure_sensor(context: dg.RunFailureSensorContext, record_store: RecordStoreResource) -> None:
        run = context.dagster_run
        message = context.failure_event.message or "run failed"
        done = finish(record_store.store, run, "failed", f"Dagster run {run.run_id} failed: {message}")
        context.log.info(f"run {run.run_id}: {done}")

    @dg.run_status_sensor(
        name=f"{name}_canceled_sensor",
        description=on_cancel,
        run_status=dg.DagsterRunStatus.CANCELED,
        monitored_jobs=monitored,
        default_status=dg.DefaultSensorStatus.RUNNING,
        tags={"bulkops/group": group},
    )
    def canceled_sensor(context: dg.RunStatusSensorContext, record_store: RecordStoreResource) -> None:
        run = context.dagster_run
        done = finish(record_store.store, run, "cancelled", cancel_error(run))
        context.log.info(f"run {run.run_id}: {done}")

    return failure_sensor, canceled_sensor
