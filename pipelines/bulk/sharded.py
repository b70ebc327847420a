"""A bulk job whose ranges of records are Dagster steps: an executor can put them on different workers.

`sharded_bulk_job`: `plan_bulk_job_ranges` starts the bulk job and splits its items in `parallel`
ranges of `seq` (kept in `summary.ranges`, so a relaunch keeps them), one dynamic output per range
not yet done; `apply_bulk_job_range` applies one range batch by batch with its own cursor (a step
per range); `finish_bulk_job_ranges` ends the bulk job once, when every range is done; then the
webhooks are delivered as in `bulk_job`. Each batch commits its records, outcomes, audit rows, the
added counters and its range's cursor in one transaction (`connectors/store/bulk/ranges.py`).

Under the default multiprocess executor the range steps are processes of the run worker's host;
`celery_sharded_bulk_job` (`pipelines/bulk/celery_jobs.py`, the `celery` extra) makes them tasks
on the Celery workers.
"""

import os
import socket
import uuid
from collections.abc import Iterator
from typing import Any

import dagster as dg
from pydantic import Field

from connectors.store import bulk
from connectors.store.bulk import ranges
from connectors.store.dialect import dialect_named
from pipelines.bulk.ops import (
    BulkJobConfig,
    bulk_job_id,
    deliver_bulk_job_webhooks,
    ending_bulk_job_on_error,
    progress_observation,
    report_bulk_job,
    report_unstarted_bulk_job,
    tag_bulk_job_run,
    terminated_failure,
)
from pipelines.bulk.service import MAX_PARALLEL
from pipelines.instance import TerminationWatch, record_process
from pipelines.retries import RETRY_POLICY
from resources import RecordStoreResource

TAGS = {"bulkops/kind": "bulk_job", "bulkops/group": "bulk"}


class ShardedBulkJobConfig(BulkJobConfig):
    """Which bulk job to run, in how many ranges."""

    parallel: int = Field(
        default=4,
        ge=1,
        le=MAX_PARALLEL,
        description=f"Ranges of records (1 to {MAX_PARALLEL}), each a step of its own; a bulk job already split keeps its ranges.",
    )


def _finish(context: dg.OpExecutionContext, store, job_id: uuid.UUID, output_name: str | None = None) -> dict:
    status = ranges.finish_ranges(store, job_id, run_id=context.run.run_id)
    if status == "processing":
        raise dg.Failure(
            description=f"bulk job {job_id}: a range is unfinished; running it again resumes it", allow_retries=False
        )
    return report_bulk_job(context, store, job_id, output_name)


@dg.op(
    out={"range": dg.DynamicOut(dict, is_required=False), "done": dg.Out(dict, is_required=False)},
    retry_policy=RETRY_POLICY,
    tags=TAGS,
    description="Start the bulk job and split its records in ranges (kept by a relaunch): one output per range to do.",
)
def plan_bulk_job_ranges(
    context: dg.OpExecutionContext, config: ShardedBulkJobConfig, record_store: RecordStoreResource
) -> Iterator[dg.DynamicOutput | dg.Output]:
    record_process(context)
    job_id = bulk_job_id(config.bulk_job_id)
    store = record_store.store
    try:
        started = ranges.plan_ranges(store, job_id, config.parallel, context.run.run_id)
    except bulk.JobGone as exc:
        raise dg.Failure(description=f"no bulk job {job_id}: {exc}", allow_retries=False) from exc
    tag_bulk_job_run(context, store, job_id)
    if started is None:
        yield dg.Output(report_unstarted_bulk_job(context, store, job_id, "done"), output_name="done")
        return
    todo = started.unfinished()
    context.log.info(
        f"bulk job {job_id}: {started.job.operation} on {started.job.total_count} {started.job.entity_type} "
        f"({started.job.mode}) in {len(started.ranges)} ranges, {len(todo)} to do"
    )
    if not todo:
        # every range was done by an earlier run that stopped before its finish step
        yield dg.Output(_finish(context, store, job_id, "done"), output_name="done")
        return
    batch_size = config.batch_size or dialect_named(store.dialect).bulk_batch_size
    for k in todo:
        r = started.ranges[k]
        yield dg.DynamicOutput(
            {"bulk_job_id": str(job_id), "range": k, "count": len(started.ranges), "batch_size": batch_size, **r},
            output_name="range",
            mapping_key=f"range_{k}",
        )


@dg.op(
    retry_policy=RETRY_POLICY,
    tags=TAGS,
    description="Apply one range of the bulk job batch by batch, resuming after its last committed batch.",
)
def apply_bulk_job_range(context: dg.OpExecutionContext, record_store: RecordStoreResource, part: dict) -> dict:
    job_id, k = uuid.UUID(part["bulk_job_id"]), part["range"]
    which = f"range {k + 1} of {part['count']}"
    store = record_store.store
    context.log.info(
        f"applying {which} of bulk job {job_id} (attempt {context.retry_number + 1}) on {socket.gethostname()} pid {os.getpid()}"
    )

    def observe(result: bulk.BatchResult) -> None:
        context.log_event(progress_observation(job_id, result, range=k))

    stop = TerminationWatch(context)
    with ending_bulk_job_on_error(context, store, job_id, part=which):
        counts = ranges.run_range(
            store, job_id, k, part["batch_size"], run_id=context.run.run_id, on_batch=observe, should_stop=stop
        )
        if stop.terminated:
            bulk.finish_job(store, job_id, "cancelled")
            raise terminated_failure(job_id)
    worker = {"host": socket.gethostname(), "pid": os.getpid()}
    context.add_output_metadata({"range": k, **counts, **worker})
    return {**part, "counts": counts, "worker": worker}


@dg.op(
    retry_policy=RETRY_POLICY,
    tags=TAGS,
    description="Once every range is applied: end the bulk job (completed, failed or cancelled) and report it.",
)
def finish_bulk_job_ranges(
    context: dg.OpExecutionContext, record_store: RecordStoreResource, applied: list[dict]
) -> dict:
    job_id = uuid.UUID(applied[0]["bulk_job_id"])
    job = _finish(context, record_store.store, job_id)
    context.add_output_metadata(
        {
            "ranges": dg.MetadataValue.json(
                [{"range": a["range"], **a["counts"], **a["worker"]} for a in sorted(applied, key=lambda a: a["range"])]
            )
        }
    )
    return job


def compose_sharded_bulk_job() -> None:
    """The steps of a sharded bulk job, to call in a job's body: plan, one step per range, finish, webhooks."""
    parts, done = plan_bulk_job_ranges()
    deliver_bulk_job_webhooks.alias("deliver_bulk_job_webhooks")(
        finish_bulk_job_ranges(parts.map(apply_bulk_job_range).collect())
    )
    deliver_bulk_job_webhooks.alias("deliver_done_bulk_job_webhooks")(done)


JOB_ARGS: dict[str, Any] = {
    "tags": TAGS,
    "resource_defs": {"record_store": RecordStoreResource()},
    "description": (
        "Runs one bulk job as N ranges of its records, each a step of its own (ops.plan_bulk_job_ranges.config."
        "parallel): one bulk job, exact counters, audit and outcomes; an executor can run the ranges on different "
        "workers. Terminate the run to cancel the bulk job."
    ),
}


@dg.job(name="sharded_bulk_job", **JOB_ARGS)
def sharded_bulk_job() -> None:
    compose_sharded_bulk_job()
