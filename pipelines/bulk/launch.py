"""Launching, watching and terminating the Dagster run of a bulk job.

The run goes through the instance's run launcher by public API (`pipelines.runs`): submitted to a
Dagster webserver serving the instance when one answers, else launched with `dagster job launch`.
A bulk job created with `parallel` above 1 (or split in ranges by an earlier run) runs as
`sharded_bulk_job`, its ranges applied at once, else as `bulk_job`, one cursor. Either way it is
listed on its job's page, and Terminate (UI, API, `bulkops bulk-jobs cancel`) ends it
CANCELED at its next interrupt point, committed batches kept.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from typing import Any

import dagster as dg

from connectors import settings
from connectors.store import RecordStore, bulk
from connectors.store.bulk import jobs
from pipelines import runs
from pipelines.bulk import service
from resources import store_run_config

JOB_NAME = "bulk_job"
RANGED_JOB_NAME = "sharded_bulk_job"


def run_config_for(
    job_id: uuid.UUID, database_url: str | None = None, batch_size: int = 0, *, parallel: int = 1
) -> dict:
    """Run config of the run of one bulk_jobs row, as the Launchpad shows it.

    Args:
        job_id: the bulk job.
        database_url: the record store the run uses; defaults to the run's own settings.
        batch_size: records per transaction (0: the dialect default).
        parallel: 1: `bulk_job`'s config (`BulkJobConfig`); more: `sharded_bulk_job`'s, in this many ranges.
    """
    from pipelines.bulk.ops import BulkJobConfig
    from pipelines.bulk.sharded import ShardedBulkJobConfig

    if parallel > 1:
        step = "plan_bulk_job_ranges"
        op_config = ShardedBulkJobConfig(bulk_job_id=str(job_id), batch_size=batch_size, parallel=parallel)
    else:
        step, op_config = "apply_bulk_job", BulkJobConfig(bulk_job_id=str(job_id), batch_size=batch_size)
    config: dict = {"ops": {step: {"config": op_config.model_dump()}}}
    if database_url:
        config["resources"] = store_run_config(database_url)
    return config


def _tags_for(job: Any) -> dict[str, str]:
    return {
        "bulkops/kind": "bulk_job",
        "bulkops/bulk_job_id": str(job.id),
        "bulkops/account_id": str(job.account_id),
        "bulkops/operation": f"{job.entity_type}.{job.operation}",
        "bulkops/parallel": str(service.parallel_of(job)),
    }


def launch_bulk_job(
    job_id: uuid.UUID,
    *,
    database_url: str | None = None,
    instance: dg.DagsterInstance | None = None,
    batch_size: int = 0,
    url: str | None = None,
    background: bool = False,
) -> str:
    """Launch the Dagster run of a bulk job and store its run id on the job.

    A bulk job of `parallel` above 1, or one an earlier run split in ranges (a relaunch), runs as
    `sharded_bulk_job` in that many ranges; any other as `bulk_job`.

    Args:
        job_id: the bulk job.
        database_url: the record store the run uses; defaults to the run's own settings.
        instance: the Dagster instance (default: `DAGSTER_HOME`'s).
        batch_size: records per transaction (0: the dialect default).
        url: a Dagster webserver to submit to (default: found as `pipelines.runs.webserver` says).
        background: return without waiting for `dagster job launch` (the API); a launch that fails
            then fails the job with the reason.

    Returns:
        The Dagster run id.

    Raises:
        LookupError: no such bulk job.
        RuntimeError: Dagster refused the run (its message included).
    """
    url_of_store = database_url or settings.database_url()
    store = RecordStore(url_of_store, check=False)

    @contextlib.contextmanager
    def own_store() -> Iterator[RecordStore]:
        # the launch thread's own (the caller disposes its store once the launch is under way)
        mine = RecordStore(url_of_store, check=False)
        try:
            yield mine
        finally:
            mine.dispose()

    try:
        with store.engine.connect() as conn:
            job = jobs.launch_row(conn, job_id)
        if job is None:
            raise LookupError(f"no bulk job {job_id}")

        def failed(run_id: str, exc: BaseException) -> None:
            with own_store() as failing:
                bulk.finish_job(
                    failing,
                    job_id,
                    "failed",
                    error=f"its Dagster run {run_id} could not be launched: {exc}",
                    only_if=("pending", "processing"),
                )

        def still_wanted(run_id: str) -> bool:
            # a job cancelled while its launch waited for a slot needs no run (a failed job
            # being launched again is still wanted); it then names no run that never existed
            with own_store() as checking, checking.begin() as conn:
                row = jobs.launch_row(conn, job_id)
                wanted = row is not None and row.status not in ("cancelled", "completed")
                if not wanted:
                    jobs.forget_run_id(conn, job_id, run_id)
            return wanted

        parallel = service.parallel_of(job)
        run_id = runs.launch_run(
            RANGED_JOB_NAME if parallel > 1 else JOB_NAME,
            run_config=run_config_for(job_id, database_url, batch_size, parallel=parallel),
            tags=_tags_for(job),
            instance=instance,
            url=url,
            on_failure=failed if background else None,
            still_wanted=still_wanted if background else None,
        )
        with store.begin() as conn:
            jobs.set_run_id(conn, job_id, run_id)
        return run_id
    finally:
        store.dispose()


def wait_for_bulk_job_run(
    run_id: str, instance: dg.DagsterInstance | None = None, timeout: float | None = None
) -> dg.DagsterRunStatus:
    """Wait for a bulk job's run to end; SUCCESS, FAILURE or CANCELED."""
    return runs.wait_for_run(run_id, instance=instance, timeout=timeout)


def terminate_bulk_job_run(run_id: str, instance: dg.DagsterInstance | None = None) -> bool:
    """Terminate a bulk job's run as the UI does; True when Dagster accepted it.

    The interrupt reaches the batch loop: committed batches stay and the job is marked
    cancelled with exact counts.
    """
    return runs.terminate_run(run_id, instance=instance)
