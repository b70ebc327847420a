"""The sharded bulk job under Dagster's Celery executor (dagster-celery, the `celery` extra).

Its range steps are Celery tasks: a worker listening on the run's queue (executor config
`config_source.task_default_queue`) takes each. `deploy/celery/` holds the executor config and the
worker command; docs/deploy.md, "Production profile".
"""

from __future__ import annotations

import dagster as dg
from dagster_celery import celery_executor

from pipelines.bulk.sharded import JOB_ARGS, compose_sharded_bulk_job


@dg.job(name="celery_sharded_bulk_job", executor_def=celery_executor, **JOB_ARGS)
def celery_sharded_bulk_job() -> None:
    compose_sharded_bulk_job()
