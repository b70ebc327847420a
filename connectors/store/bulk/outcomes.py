"""What a batch records: each item's outcome, the audit rows of its changes, the job's failure summary."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from connectors.store import changes, schema
from connectors.store.bulk.base import Counts, Outcome

FAILURE_REASONS_SHOWN = changes.REASONS_LISTED

items_t = schema.bulk_job_items


def actor(job: sa.Row) -> str:
    """Who a job's audit rows name: its creator, else the system."""
    return str(job.created_by) if job.created_by else "bulkops"


def write_outcomes(
    conn: sa.Connection, job: sa.Row, outcomes: Sequence[Outcome], now: datetime, *, keep_pending: bool = False
) -> None:
    """Store each item's status, error and before/after images (a plan keeps them pending)."""
    if not outcomes:
        return
    stmt = (
        items_t.update()
        .where(items_t.c.bulk_job_id == job.id, items_t.c.seq == sa.bindparam("b_seq"))
        .values(
            status=sa.bindparam("b_status"),
            error=sa.bindparam("b_error"),
            before=sa.bindparam("b_before"),
            after=sa.bindparam("b_after"),
            updated_at=now,
        )
    )
    conn.execute(
        stmt,
        [
            {
                "b_seq": o.seq,
                "b_status": "pending" if keep_pending else o.status,
                "b_error": o.error,
                "b_before": o.before,
                "b_after": o.after,
            }
            for o in outcomes
        ],
    )


def write_bulk_audit(conn: sa.Connection, job: sa.Row, outcomes: Iterable[Outcome], now: datetime) -> None:
    """The audit rows of a batch's succeeded items, rows of the job's change set (PostgreSQL's
    set-based batches write theirs in SQL)."""
    rows = [audit for o in outcomes if o.status == "succeeded" for audit in o.audit]
    if rows:
        changes.write_audit_rows(conn, change_set(job), job.operation, rows, now=now)


def change_set(job: sa.Row) -> changes.ChangeSet:
    """The bulk job's change set (its id is the job's) as its audit rows carry it."""
    return changes.backed_change_set(job.id, job.account_id, "bulk_job", actor(job), job.rollback_of)


def db_error_text(exc: sa.exc.DBAPIError) -> str:
    """The first line of a database error, as an item's error."""
    text = str(exc.orig).strip().splitlines()[0] if exc.orig is not None else str(exc)
    return text[:500]


def count(outcomes: Iterable[Outcome]) -> Counts:
    s = f = k = 0
    for o in outcomes:
        if o.status == "succeeded":
            s += 1
        elif o.status == "failed":
            f += 1
        else:
            k += 1
    return s, f, k


def failure_reasons(
    conn: sa.Connection, job_id: uuid.UUID, limit: int = FAILURE_REASONS_SHOWN
) -> list[tuple[str, int]]:
    """The most frequent errors of a job's failed items, most frequent first: [(error, count)]."""
    n = sa.func.count().label("n")
    stmt = (
        sa.select(items_t.c.error, n)
        .where(items_t.c.bulk_job_id == job_id, items_t.c.status == "failed")
        .group_by(items_t.c.error)
        .order_by(n.desc(), items_t.c.error)
        .limit(limit)
    )
    return [(error or "unknown error", int(count)) for error, count in conn.execute(stmt)]


def failure_outcome(conn: sa.Connection, job: sa.Row, failed_count: int) -> dict[str, Any]:
    """How a job with failed records ends: `failed` when every record failed, else `completed`
    (`changes.ends_failed`, the rule of every change set).

    Either way `summary.failed_reasons` lists the most frequent errors with their counts; a
    failed job also says them in `error_message`. A completed job's `error_message` stays empty:
    it names a job-level failure, and per-record failures are `failed_count`.
    """
    reasons = changes.counted_reasons(failure_reasons(conn, job.id), failed_count)
    summary = {**(job.summary or {}), "failed_reasons": reasons}
    out: dict[str, Any] = {"summary": summary}
    if changes.ends_failed(attempted=job.total_count, failed=failed_count):
        out.update(status="failed", error_message=changes.all_failed_message(failed_count, reasons))
    return out
