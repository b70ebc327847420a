"""The sharded import under Dagster's Celery executor (dagster-celery, the `celery` extra).

Its shard steps are Celery tasks: a worker listening on the run's queue (executor config
`config_source.task_default_queue`, default `dagster`) takes each. `deploy/celery/` holds the
executor config and the worker command; docs/deploy.md, "Production profile".
"""

from __future__ import annotations

import dagster as dg
from dagster_celery import celery_executor

from pipelines.imports.sharded import JOB_ARGS, compose_sharded_import


@dg.job(name="celery_sharded_import_job", executor_def=celery_executor, **JOB_ARGS)
def celery_sharded_import_job() -> None:
    compose_sharded_import()
