"""Ops of the bulk job: apply the bulk job's records in committed batches, then deliver its webhooks."""

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import dagster as dg
from pydantic import Field

from connectors import webhooks
from connectors.store import accounts, bulk
from connectors.store.bulk import jobs
from connectors.store.errors import describe_error
from connectors.store.faults import is_transient
from pipelines.bulk import service
from pipelines.instance import TerminationWatch, record_process, run_terminating
from pipelines.monitoring.errors import failed_records_metadata
from pipelines.monitoring.tags import tag_run
from pipelines.records import bulk_job_changes
from pipelines.retries import RETRY_POLICY, last_attempt, retries_exhausted, said_when_exhausted
from resources import RecordStoreResource

# the bulk_jobs table, whose rows' progress every batch reports as an observation
bulk_jobs_table = dg.AssetSpec(
    key=dg.AssetKey(["bulkops", "bulk_jobs"]),
    description=(
        "The bulk_jobs table of the record store: one row per bulk job (status, total, processed and failed "
        "counts). Each committed batch of a bulk_job run records an observation with the bulk job's counts."
    ),
    group_name="bulk",
    kinds={"sql"},
)
PROGRESS_ASSET = bulk_jobs_table.key
RESUME = "its committed batches are kept and running it again resumes"


class BulkJobConfig(dg.Config):
    """Which bulk job to run."""

    bulk_job_id: str = Field(description="Id of the bulk_jobs row (created by the API or `bulkops bulk-jobs create`).")
    batch_size: int = Field(
        default=0,
        ge=0,
        description="Records per transaction; 0 picks 20,000 on PostgreSQL and 500 on SQLite.",
    )


def terminated_failure(job_id: uuid.UUID) -> dg.Failure:
    """The failure a step of a terminated run raises: the bulk job is cancelled, its committed batches kept."""
    return dg.Failure(
        description=f"run terminated: bulk job {job_id} cancelled, its committed batches are kept",
        allow_retries=False,
    )


def _job_row(store, job_id: uuid.UUID):
    with store.engine.connect() as conn:
        return jobs.summary_row(conn, job_id)


def _items_table(rows: list[dict], columns: list[str]) -> dg.MetadataValue:
    return dg.MetadataValue.table(
        records=[dg.TableRecord({c: ("" if r.get(c) is None else str(r.get(c))) for c in columns}) for r in rows],
        schema=dg.TableSchema(columns=[dg.TableColumn(c, "string") for c in columns]),
    )


@dg.op(
    description=(
        "Applies a bulk job's records in batches; each batch commits its record changes, per-record outcomes, "
        "audit rows and counters in one transaction. Resumes after the last committed batch; a terminated run "
        "leaves the bulk job cancelled with exact counts. A bulk job awaiting confirmation only reports its preview."
    ),
    retry_policy=RETRY_POLICY,
    tags={"bulkops/kind": "bulk_job"},
    out=dg.Out(dict, description="The bulk job as the API returns it."),
)
def apply_bulk_job(context: dg.OpExecutionContext, config: BulkJobConfig, record_store: RecordStoreResource) -> dict:
    record_process(context)
    job_id = bulk_job_id(config.bulk_job_id)
    with said_when_exhausted(
        context,
        what=f"bulk job {job_id}",
        resume=RESUME,
        url=record_store.url,
    ):
        return run_bulk_job_in_op(context, record_store.store, job_id, config.batch_size)


def bulk_job_id(value: str) -> uuid.UUID:
    """The bulk job id of a step's config; a value that is no uuid fails the step for good."""
    try:
        return uuid.UUID(value)
    except ValueError as exc:
        raise dg.Failure(description=f"no bulk job {value!r}: {exc}", allow_retries=False) from exc


def progress_observation(job_id: uuid.UUID, result: bulk.BatchResult, **more: Any) -> dg.AssetObservation:
    """A batch's progress as an observation of the bulk-jobs progress asset (the run's live counters)."""
    return dg.AssetObservation(
        asset_key=PROGRESS_ASSET,
        metadata={
            "bulk_job_id": str(job_id),
            "total_count": result.total_count,
            "processed_count": result.processed_count,
            "failed_count": result.failed_count,
            "batch": f"{result.lo}..{result.hi}",
            **more,
        },
    )


def run_bulk_job_in_op(context: dg.OpExecutionContext, store, job_id: uuid.UUID, batch_size: int = 0) -> dict:
    """Apply bulk job JOB_ID in this op: the batch loop, progress observations, report metadata; the job."""
    try:
        started = bulk.start_job(store, job_id, context.run.run_id)
    except bulk.JobGone as exc:
        raise dg.Failure(description=f"no bulk job {job_id}: {exc}", allow_retries=False) from exc
    except bulk.SplitInRanges as exc:
        raise dg.Failure(description=str(exc), allow_retries=False) from exc
    tag_bulk_job_run(context, store, job_id)
    if started is None:
        return report_unstarted_bulk_job(context, store, job_id)
    context.log.info(
        f"bulk job {job_id}: {started.operation} on {started.total_count} {started.entity_type} "
        f"({started.mode}), resuming at record {started.next_seq}"
    )

    def observe(result: bulk.BatchResult) -> None:
        context.log_event(progress_observation(job_id, result))

    stop = TerminationWatch(context)
    with ending_bulk_job_on_error(context, store, job_id):
        # the one batch loop of bulk jobs; a transient fault is not retried in place but by the step's retry policy
        bulk.run_job(
            store,
            job_id,
            batch_size=batch_size or None,
            run_id=context.run.run_id,
            on_batch=observe,
            should_stop=stop,
            transient_retries=0,
        )
        if stop.terminated:
            raise terminated_failure(job_id)
    return report_bulk_job(context, store, job_id)


@contextmanager
def ending_bulk_job_on_error(
    context: dg.OpExecutionContext, store, job_id: uuid.UUID, part: str | None = None
) -> Iterator[None]:
    """Around a step's batch loop of bulk job JOB_ID (or of its PART, "range 2 of 4"): an error ends the bulk job.

    A transient fault passes on to the step's retry policy, but on the last attempt fails the bulk job
    as any other error does: failed with the reason (PART first), and the step fails for good. A
    terminated run leaves the bulk job cancelled, its committed batches kept.
    """
    what = f"{part} of bulk job {job_id}" if part else f"bulk job {job_id}"
    try:
        yield
    except (dg.Failure, dg.RetryRequested):
        raise
    except Exception as exc:
        reason = describe_error(exc, url=store.engine.url)
        if is_transient(exc):
            if not last_attempt(context, RETRY_POLICY):
                context.log.warning(f"{what}: will retry: {reason}")
                raise
            failure = retries_exhausted(context, exc, what=what, resume=RESUME, url=store.engine.url, reason=reason)
        else:
            failure = dg.Failure(description=f"{what} failed: {reason}", allow_retries=False)
        bulk.finish_job(store, job_id, "failed", error=f"{part}: {reason}" if part else reason)
        raise failure from exc
    except BaseException as exc:
        # run terminated: committed batches stay, the bulk job stops here (once: only from processing)
        bulk.finish_job(store, job_id, "cancelled")
        if run_terminating(context):
            # a failed step of a CANCELING run ends CANCELED; re-raising would be retried in-process
            raise terminated_failure(job_id) from exc
        raise


def tag_bulk_job_run(context: dg.OpExecutionContext, store, job_id: uuid.UUID) -> None:
    """Tag the step's run with the bulk job's kind, account, entity and change set (the UI's run filters)."""
    row = _job_row(store, job_id)
    with store.engine.connect() as conn:
        account = accounts.slug_of(conn, row.account_id)
    tag_run(context, kind="bulk_job", account=account, entity=row.entity_type, change_set_id=job_id)


def report_unstarted_bulk_job(
    context: dg.OpExecutionContext, store, job_id: uuid.UUID, output_name: str | None = None
) -> dict:
    """Report a bulk job a run found nothing to apply of: its preview when it awaits confirmation; the job.

    Args:
        context: the step reporting it (its output metadata gets the preview).
        store: the record store.
        job_id: the bulk job.
        output_name: the step's output the metadata goes to, when it has several.
    """
    row = _job_row(store, job_id)
    job = service.job_to_dict(row)
    if row.mode == "preview" and row.status == "pending":
        plan = service.preview(store, row.account_id, job_id, limit=100)
        context.add_output_metadata(
            {
                "plan_id": plan["plan_id"],
                "would_change": plan["would_change"],
                "not_found": plan["not_found"],
                "skipped": plan["skipped"],
                "preview": _items_table(plan["changes"], ["entity_id", "before", "after"]),
            },
            output_name=output_name,
        )
        context.log.info(f"bulk job {job_id} awaits confirmation of plan {plan['plan_id']}: nothing applied")
    else:
        context.log.info(f"bulk job {job_id} is {row.status}: nothing to do")
    return job


def report_bulk_job(context: dg.OpExecutionContext, store, job_id: uuid.UUID, output_name: str | None = None) -> dict:
    """Report a bulk job a run applied: counters, first changes and problems as output metadata, and its
    record changes as asset events; the job.

    Args:
        context: the step that ended it.
        store: the record store.
        job_id: the bulk job.
        output_name: the step's output the metadata goes to, when it has several.
    """
    row = _job_row(store, job_id)
    job = service.job_to_dict(row)
    with store.engine.connect() as conn:
        changes, problems = jobs.report_items(conn, job_id, limit=100)
    context.add_output_metadata(
        {
            "status": row.status,
            "mode": row.mode,
            "dagster/row_count": row.processed_count,
            "total_count": row.total_count,
            "processed_count": row.processed_count,
            "failed_count": row.failed_count,
            "skipped_count": row.skipped_count,
            "changes (first 100)": _items_table(changes, ["entity_id", "before", "after"]),
            "failed and skipped (first 100)": _items_table(problems, ["entity_id", "status", "error"]),
            **(failed_records_metadata(store, job_id, kind="bulk_job") if row.failed_count else {}),
        },
        output_name=output_name,
    )
    context.log.info(
        f"bulk job {job_id} {row.status}: {row.processed_count}/{row.total_count} processed, "
        f"{row.failed_count} failed, {row.skipped_count} skipped"
    )
    for event in bulk_job_changes(job):
        context.log_event(event)
    return job


@dg.op(
    description="Delivers the webhook automations the bulk job put in the outbox (httpx, retries with backoff).",
    tags={"bulkops/kind": "bulk_job"},
)
def deliver_bulk_job_webhooks(context: dg.OpExecutionContext, job: dict, record_store: RecordStoreResource) -> None:
    if job["mode"] != "execute" or job["operation"] != "trigger_automations":
        return
    counts = webhooks.deliver_pending(record_store.store, bulk_job_id=uuid.UUID(job["id"]))
    context.add_output_metadata(counts)
    context.log.info(f"webhooks of bulk job {job['id']}: {counts}")
