"""Running a bulk job: start it, apply it batch by batch, plan it, finish it.

A job's records are its `bulk_job_items`, numbered by `seq`. Work walks seq ranges; each batch
is one transaction holding the record changes, the item outcomes, the audit rows and the job
counters, and it advances `bulk_jobs.next_seq`. A run killed mid-batch therefore leaves the batch
unapplied, and the next run starts at `next_seq`: no record is changed twice.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from connectors.store import schema
from connectors.store.bulk.base import NOT_FOUND, Batch, Counts, Item, Operation, Outcome, utcnow
from connectors.store.bulk.catalog import operation_for
from connectors.store.bulk.outcomes import count, db_error_text, failure_outcome, write_bulk_audit, write_outcomes
from connectors.store.dialect import dialect_named, dialect_of
from connectors.store.faults import is_transient
from connectors.store.store import RecordStore

items_t = schema.bulk_job_items
jobs_t = schema.bulk_jobs


class JobGone(LookupError):
    pass


class SplitInRanges(ValueError):
    """The job was split in ranges (`summary.ranges`, `ranges.py`): one cursor would not see them."""


@dataclass
class BatchResult:
    lo: int
    hi: int
    succeeded: int
    failed: int
    skipped: int
    job_status: str
    processed_count: int
    failed_count: int
    total_count: int


def lock_job(conn: sa.Connection, job_id: uuid.UUID) -> sa.Row:
    """The job's row, locked until the transaction ends."""
    dialect = dialect_of(conn)
    dialect.lock_job(conn, job_id)
    job = conn.execute(dialect.for_update(sa.select(jobs_t).where(jobs_t.c.id == job_id))).one_or_none()
    if job is None:
        raise JobGone(f"bulk job {job_id} does not exist")
    return job


def pending_items(conn: sa.Connection, job_id: uuid.UUID, lo: int, hi: int) -> list[Item]:
    # status is checked here, not in SQL: a status predicate lures the planner onto the
    # (bulk_job_id, status) index, which scans every pending item of the job per batch
    stmt = (
        sa.select(items_t.c.seq, items_t.c.entity_id, items_t.c.before, items_t.c.status)
        .where(items_t.c.bulk_job_id == job_id, items_t.c.seq >= lo, items_t.c.seq < hi)
        .order_by(items_t.c.seq)
    )
    return [Item(r.seq, r.entity_id, r.before) for r in conn.execute(stmt) if r.status == "pending"]


def _evaluate(batch: Batch, items: Sequence[Item]) -> list[Outcome]:
    return operation_for(batch).evaluate(items).outcomes


def _apply(op: Operation, items: Sequence[Item]) -> list[Outcome]:
    b = op.batch
    evaluation = op.evaluate(items)
    op.apply(evaluation)
    write_outcomes(b.conn, b.job, evaluation.outcomes, b.now)
    write_bulk_audit(b.conn, b.job, evaluation.outcomes, b.now)
    return evaluation.outcomes


def _apply_batch(batch: Batch, lo: int, hi: int) -> Counts:
    op = operation_for(batch)
    counts = op.apply_set_based(lo, hi)
    if counts is not None:
        return counts
    return count(_apply(op, pending_items(batch.conn, batch.job.id, lo, hi)))


def _apply_one_by_one(batch: Batch, lo: int, hi: int) -> Counts:
    # a database error on one record (constraint, bad value) must not sink its batch: retry one by one
    conn, totals = batch.conn, [0, 0, 0]
    for item in pending_items(conn, batch.job.id, lo, hi):
        try:
            with conn.begin_nested():
                outcomes = _apply(operation_for(batch), [item])
        except sa.exc.DBAPIError as exc:
            if is_transient(exc):
                raise
            outcomes = [Outcome(item.seq, item.entity_id, "failed", db_error_text(exc), before=item.planned)]
            write_outcomes(conn, batch.job, outcomes, batch.now)
        for i, n in enumerate(count(outcomes)):
            totals[i] += n
    return totals[0], totals[1], totals[2]


def _run_batch(conn: sa.Connection, job: sa.Row, lo: int, hi: int, now: datetime) -> Counts:
    if job.mode == "dry_run":
        batch = Batch(conn, job, now)
        outcomes = _evaluate(batch, pending_items(conn, job.id, lo, hi))
        write_outcomes(conn, job, outcomes, now)
        return count(outcomes)
    batch = Batch(conn, job, now, check_plan=job.plan_id is not None)
    try:
        with conn.begin_nested():
            return _apply_batch(batch, lo, hi)
    except (sa.exc.IntegrityError, sa.exc.DataError) as exc:
        if is_transient(exc):
            raise
        return _apply_one_by_one(batch, lo, hi)


def start_job(
    store: RecordStore, job_id: uuid.UUID, run_id: str | None = None, *, in_ranges: bool = False
) -> sa.Row | None:
    """Move a job to processing for a run; None when it is finished or waits for a confirm.

    Raises SplitInRanges for a one-cursor run (not IN_RANGES) of a job split in ranges."""
    now = utcnow()
    with store.begin() as conn:
        job = lock_job(conn, job_id)
        if job.status in ("completed", "cancelled"):
            return None
        if job.mode == "preview":
            return None
        if job.status == "pending" and job.cancel_requested_at is not None:
            return None
        if not in_ranges and (job.summary or {}).get("ranges"):
            raise SplitInRanges(f"bulk job {job_id} is split in ranges: run it with sharded_bulk_job")
        values: dict[str, Any] = {"status": "processing", "updated_at": now, "error_message": None}
        if run_id:
            values["dagster_run_id"] = run_id
        if job.started_at is None:
            values["started_at"] = now
        conn.execute(jobs_t.update().where(jobs_t.c.id == job_id).values(**values))
        return conn.execute(sa.select(jobs_t).where(jobs_t.c.id == job_id)).one()


def not_processing_for(job: sa.Row, run_id: str | None) -> bool:
    """The job may not take a batch from RUN_ID: not processing (ended, cancelled), or taken by another run."""
    return job.status != "processing" or bool(run_id and job.dagster_run_id and job.dagster_run_id != run_id)


def process_next_batch(
    store: RecordStore, job_id: uuid.UUID, batch_size: int, *, run_id: str | None = None
) -> BatchResult | None:
    """Apply the next batch in one transaction; None when the job is not processing (any more)."""
    now = utcnow()
    with store.begin() as conn:
        job = lock_job(conn, job_id)
        if not_processing_for(job, run_id):
            return None
        if job.cancel_requested_at is not None:
            conn.execute(
                jobs_t.update().where(jobs_t.c.id == job_id).values(status="cancelled", finished_at=now, updated_at=now)
            )
            return BatchResult(
                job.next_seq, job.next_seq, 0, 0, 0, "cancelled", job.processed_count, job.failed_count, job.total_count
            )
        lo = job.next_seq
        hi = min(lo + batch_size, job.total_count)
        if hi < job.total_count:
            # the batch that completes the job commits durably
            dialect_of(conn).relax_commit(conn)
        s, f, k = _run_batch(conn, job, lo, hi, now) if lo < hi else (0, 0, 0)
        status = "completed" if hi >= job.total_count else "processing"
        values: dict[str, Any] = {
            "next_seq": hi,
            "processed_count": job.processed_count + s + f + k,
            "failed_count": job.failed_count + f,
            "skipped_count": job.skipped_count + k,
            "status": status,
            "updated_at": now,
        }
        if status == "completed":
            values["finished_at"] = now
            if values["failed_count"]:
                values.update(failure_outcome(conn, job, values["failed_count"]))
                status = values["status"]
        conn.execute(jobs_t.update().where(jobs_t.c.id == job_id).values(**values))
    return BatchResult(lo, hi, s, f, k, status, values["processed_count"], values["failed_count"], job.total_count)


def finish_job(
    store: RecordStore,
    job_id: uuid.UUID,
    status: str,
    *,
    error: str | None = None,
    only_if: Sequence[str] = ("processing",),
    run_id: str | None = None,
) -> bool:
    """Set a terminal status unless the job already left `only_if`; True when it changed."""
    now = utcnow()
    with store.begin() as conn:
        stmt = jobs_t.update().where(jobs_t.c.id == job_id, jobs_t.c.status.in_(list(only_if)))
        if run_id is not None:
            stmt = stmt.where(jobs_t.c.dagster_run_id == run_id)
        values: dict[str, Any] = {"status": status, "updated_at": now, "finished_at": now}
        if error is not None:
            values["error_message"] = error[:4000]
        return conn.execute(stmt.values(**values)).rowcount > 0


PREVIEW_EXPIRED = "preview expired"


def preview_expired_message(ttl_hours: float) -> str:
    return f"{PREVIEW_EXPIRED}: not executed within {ttl_hours:g} h of its plan; preview again"


def expire_previews(
    store_or_conn: RecordStore | sa.Connection,
    *,
    ttl_hours: float,
    job_id: uuid.UUID | None = None,
    now: datetime | None = None,
) -> int:
    """Cancel the pending previews whose plan is older than TTL_HOURS (only JOB_ID if given), in one UPDATE;
    how many. A TTL of 0 expires nothing."""
    if ttl_hours <= 0:
        return 0
    now = now or utcnow()
    stmt = (
        jobs_t.update()
        .where(
            jobs_t.c.status == "pending",
            jobs_t.c.mode == "preview",
            sa.func.coalesce(jobs_t.c.planned_at, jobs_t.c.created_at) < now - timedelta(hours=ttl_hours),
        )
        .values(status="cancelled", finished_at=now, updated_at=now, error_message=preview_expired_message(ttl_hours))
    )
    if job_id is not None:
        stmt = stmt.where(jobs_t.c.id == job_id)
    if isinstance(store_or_conn, sa.Connection):
        return store_or_conn.execute(stmt).rowcount
    with store_or_conn.begin() as conn:
        return conn.execute(stmt).rowcount


def plan_job(store: RecordStore, job_id: uuid.UUID, *, batch_size: int = 2000) -> str:
    """Evaluate every item without writing records; store before/after on the items and a new plan id."""
    with store.begin() as conn:
        job = lock_job(conn, job_id)
    now = utcnow()
    counts = {"changes": 0, "not_found": 0, "failed": 0, "skipped": 0}
    for lo in range(0, job.total_count, batch_size):
        with store.begin() as conn:
            items = [Item(i.seq, i.entity_id, None) for i in pending_items(conn, job_id, lo, lo + batch_size)]
            outcomes = _evaluate(Batch(conn, job, now), items)
            write_outcomes(conn, job, outcomes, now, keep_pending=True)
        for o in outcomes:
            if o.status == "succeeded":
                counts["changes"] += 1
            elif o.error == NOT_FOUND or (o.error or "").endswith(NOT_FOUND):
                counts["not_found"] += 1
            elif o.status == "failed":
                counts["failed"] += 1
            else:
                counts["skipped"] += 1
    plan_id = uuid.uuid4().hex
    with store.begin() as conn:
        summary = dict(job.summary or {})
        summary["plan"] = counts
        conn.execute(
            jobs_t.update()
            .where(jobs_t.c.id == job_id)
            .values(plan_id=plan_id, planned_at=utcnow(), summary=summary, updated_at=utcnow())
        )
    return plan_id


def run_job(
    store: RecordStore,
    job_id: uuid.UUID,
    *,
    batch_size: int | None = None,
    run_id: str | None = None,
    on_batch: Callable[[BatchResult], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    transient_retries: int = 3,
) -> str | None:
    """Process a job to its end outside Dagster (tests, CLI); returns its final status."""
    if start_job(store, job_id, run_id) is None:
        return None
    size = batch_size or dialect_named(store.dialect).bulk_batch_size
    while True:
        if should_stop is not None and should_stop():
            finish_job(store, job_id, "cancelled")
            return "cancelled"
        attempt = 0
        while True:
            try:
                result = process_next_batch(store, job_id, size, run_id=run_id)
                break
            except sa.exc.DBAPIError as exc:
                attempt += 1
                if not is_transient(exc) or attempt > transient_retries:
                    raise
                time.sleep(min(30.0, 0.5 * 2 ** (attempt - 1)))
        if result is None:
            with store.begin() as conn:
                return conn.scalar(sa.select(jobs_t.c.status).where(jobs_t.c.id == job_id))
        if on_batch is not None:
            on_batch(result)
        if result.job_status != "processing":
            return result.job_status
