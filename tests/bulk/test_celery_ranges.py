"""The production profile's scale-out for bulk jobs: the ranges of one bulk job run on two Celery workers.

Real broker, real workers, the production dagster.yaml and a PostgreSQL record store: the fixtures
of tests/imports/test_celery_shards.py.
"""

from __future__ import annotations

import uuid

import dagster as dg
import pytest

from connectors.store import bulk
from pipelines.bulk.celery_jobs import celery_sharded_bulk_job
from tests.bulk.conftest import Seeder, archive_job
from tests.bulk.test_sharded_steps import audit_per_record, counters, mixed_ids, outcomes
from tests.imports.test_celery_shards import (  # noqa: F401 (fixtures)
    RUN_S,
    Celery,
    celery,
    deadline,
    pg_store,
    production,
    shard_workers,
)

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore::celery.exceptions.DuplicateTaskNameWarning"),
]


def test_the_ranges_of_one_bulk_job_run_on_both_workers_with_exact_counts(
    celery: Celery,  # noqa: F811
    production: dg.DagsterInstance,  # noqa: F811
    pg_store,  # noqa: F811
) -> None:
    account = pg_store.ensure_account(f"t-{uuid.uuid4().hex[:10]}")
    seed = Seeder(pg_store, account)
    one, many = archive_job(pg_store, account, mixed_ids(seed)), archive_job(pg_store, account, mixed_ids(seed))
    assert bulk.run_job(pg_store, one, batch_size=40) == "completed"
    for name in ("w1", "w2"):
        celery.start(name)
    celery.wait_ready(celery.app())

    with deadline(RUN_S):
        result = dg.execute_job(
            dg.reconstructable(celery_sharded_bulk_job),
            instance=production,
            run_config={
                "ops": {
                    "plan_bulk_job_ranges": {"config": {"bulk_job_id": str(many), "parallel": 2, "batch_size": 40}}
                },
                "resources": {"record_store": {"config": {"database_url": celery.store_url}}},
                "execution": celery.execution(),
            },
        )

    assert result.success, [e.message for e in result.all_events if e.is_failure]
    taken = shard_workers(production, result.run_id)
    # both ranges were Celery tasks, one on each worker
    assert sorted(w for k, ws in taken.items() if k.startswith("apply_bulk_job_range") for w in ws) == ["w1", "w2"]
    assert counters(pg_store, account, many) == counters(pg_store, account, one) == ("completed", 500, 500, 5, 0)
    assert outcomes(seed, many) == outcomes(seed, one)
    assert audit_per_record(seed, many) == audit_per_record(seed, one) == {1: 495}
