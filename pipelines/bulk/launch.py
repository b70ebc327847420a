"""Launching, watching and terminating the Dagster run of a bulk job.

The run goes through the instance's run launcher by public API (`pipelines.runs`): submitted to a
Dagster webserver serving the instance when one answers, else launched with `dagster job launch`.
Either way it is listed on `bulk_job`'s page, and Terminate (UI, API, `bulkops bulk-jobs cancel`) ends it
CANCELED at its next interrupt point, committed batches kept.
"""

from __future__ import annotations

import uuid
from typing import Any

import dagster as dg

from connectors import settings
from connectors.store import RecordStore, bulk
from connectors.store.bulk import jobs
from pipelines import runs

JOB_NAME = "bulk_job"


def run_config_for(job_id: uuid.UUID, database_url: str | None = None, batch_size: int = 0) -> dict:
    """Run config of the bulk job for one bulk_jobs row (its op config is `BulkJobConfig`, as the Launchpad shows it)."""
    from pipelines.bulk.ops import BulkJobConfig

    op_config = BulkJobConfig(bulk_job_id=str(job_id), batch_size=batch_size).model_dump()
    config: dict = {"ops": {"apply_bulk_job": {"config": op_config}}}
    if database_url:
        config["resources"] = {"record_store": {"config": {"database_url": database_url}}}
    return config


def _tags_for(job: Any) -> dict[str, str]:
    return {
        "bulkops/kind": "bulk_job",
        "bulkops/bulk_job_id": str(job.id),
        "bulkops/account_id": str(job.account_id),
        "bulkops/operation": f"{job.entity_type}.{job.operation}",
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
    store = RecordStore(database_url or settings.database_url(), check=False)
    try:
        with store.engine.connect() as conn:
            job = jobs.launch_row(conn, job_id)
        if job is None:
            raise LookupError(f"no bulk job {job_id}")
        url_of_store = database_url or settings.database_url()

        def failed(run_id: str, exc: BaseException) -> None:
            failing = RecordStore(url_of_store, check=False)
            try:
                bulk.finish_job(
                    failing,
                    job_id,
                    "failed",
                    error=f"its Dagster run {run_id} could not be launched: {exc}",
                    only_if=("pending", "processing"),
                )
            finally:
                failing.dispose()

        run_id = runs.launch_run(
            JOB_NAME,
            run_config=run_config_for(job_id, database_url, batch_size),
            tags=_tags_for(job),
            instance=instance,
            url=url,
            on_failure=failed if background else None,
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
