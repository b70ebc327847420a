"""The bulk job: one Dagster run per bulk_jobs row."""

from __future__ import annotations

import dagster as dg

from pipelines.bulk.ops import apply_bulk_job, deliver_bulk_job_webhooks
from pipelines.bulk.sharded import sharded_bulk_job
from pipelines.celery_jobs import celery_jobs

BULK_JOB_NAME = "bulk_job"


@dg.job(
    name=BULK_JOB_NAME,
    description=(
        "Runs one bulk job (status/stage update, delete, tags, field update, automations, recollection, "
        "contract creation, rollback) by id: batched transactions with per-record outcomes and audit, live "
        "progress as observations of bulkops/bulk_jobs. Terminate the run to cancel the bulk job."
    ),
    tags={"bulkops/kind": "bulk_job", "bulkops/group": "bulk"},
    # one step: in-process keeps start-up short and delivers termination straight to the batch loop
    executor_def=dg.in_process_executor,
)
def bulk_job() -> None:
    deliver_bulk_job_webhooks(apply_bulk_job())


# the jobs that apply a bulk job in ranges, each range a step (`sharded.py`): under the multiprocess
# executor, and under Celery's where dagster-celery is installed
RANGED_BULK_JOBS = [sharded_bulk_job, *celery_jobs("pipelines.bulk.celery_jobs", "celery_sharded_bulk_job")]
