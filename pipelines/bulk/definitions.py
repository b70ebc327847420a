"""The bulk-jobs capability: the bulk job and the sensors that reconcile it with run history."""

from __future__ import annotations

import dagster as dg

from pipelines.bulk.by_filter import bulk_operation_job
from pipelines.bulk.jobs import RANGED_BULK_JOBS, bulk_job
from pipelines.bulk.ops import bulk_jobs_table
from pipelines.bulk.sensors import bulk_job_canceled_sensor, bulk_job_failure_sensor, expired_previews_sensor

defs = dg.Definitions(
    assets=[bulk_jobs_table],
    jobs=[bulk_job, bulk_operation_job, *RANGED_BULK_JOBS],
    sensors=[bulk_job_failure_sensor, bulk_job_canceled_sensor, expired_previews_sensor],
)
