"""Consistency checks of the record store: each one query, answering how many rows break a rule and a sample.

The Dagster asset checks (`pipelines/monitoring/checks.py`) run them on a schedule; the two that
need Dagster's run history (a live run for a processing bulk job, a change set in progress past
its run's end) take the run ids from here and ask the instance about them.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from connectors.store import schema, stats

SAMPLE = 20


@dataclass(frozen=True)
class Finding:
    """How many rows break a rule, and the first few of them."""

    count: int
    sample: list[dict[str, Any]] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.count == 0


def _finding(conn: sa.Connection, q: sa.Select, limit: int = SAMPLE) -> Finding:
    sub = q.subquery()
    count = conn.scalar(sa.select(sa.func.count()).select_from(sub)) or 0
    sample = [dict(r._mapping) for r in conn.execute(sa.select(sub).limit(limit))] if count else []
    return Finding(count, [{k: (str(v) if v is not None else None) for k, v in r.items()} for r in sample])


def duplicate_emails(conn: sa.Connection, *, account_id: uuid.UUID | None = None) -> Finding:
    """Live users of one account whose emails are the same once normalised (trimmed, lower-cased)."""
    u = schema.users
    key = sa.func.lower(sa.func.trim(u.c.email))
    q = (
        sa.select(u.c.account_id, key.label("email"), sa.func.count().label("users"))
        .where(u.c.email.is_not(None), u.c.deleted_at.is_(None))
        .group_by(u.c.account_id, key)
        .having(sa.func.count() > 1)
    )
    if account_id is not None:
        q = q.where(u.c.account_id == account_id)
    return _finding(conn, q)


def applications_without_candidate(conn: sa.Connection, *, account_id: uuid.UUID | None = None) -> Finding:
    """Live applications whose candidate is missing, deleted or of another account."""
    a, u = schema.applications, schema.users
    q = (
        sa.select(a.c.id, a.c.account_id, a.c.candidate_id)
        .select_from(a.outerjoin(u, u.c.id == a.c.candidate_id))
        .where(a.c.deleted_at.is_(None))
        .where(u.c.id.is_(None) | u.c.deleted_at.is_not(None) | (u.c.account_id != a.c.account_id))
    )
    if account_id is not None:
        q = q.where(a.c.account_id == account_id)
    return _finding(conn, q)


def processing_bulk_jobs(conn: sa.Connection, *, account_id: uuid.UUID | None = None) -> list[sa.Row]:
    """(id, dagster_run_id, updated_at) of every bulk job in status processing."""
    b = schema.bulk_jobs
    q = sa.select(b.c.id, b.c.dagster_run_id, b.c.updated_at).where(b.c.status == "processing").order_by(b.c.id)
    if account_id is not None:
        q = q.where(b.c.account_id == account_id)
    return conn.execute(q).all()


def in_progress_change_sets(conn: sa.Connection, *, account_id: uuid.UUID | None = None) -> list[sa.Row]:
    """(id, kind, operation, dagster_run_id, started_at) of every change set still in progress."""
    ops = stats.operations()
    q = (
        sa.select(ops.c.id, ops.c.kind, ops.c.operation, ops.c.dagster_run_id, ops.c.started_at)
        .where(stats.status_class(ops.c.raw_status) == stats.IN_PROGRESS)
        .order_by(ops.c.started_at)
    )
    if account_id is not None:
        q = q.where(ops.c.account_id == account_id)
    return conn.execute(q).all()


def counter_mismatches(conn: sa.Connection, *, since: datetime, account_id: uuid.UUID | None = None) -> Finding:
    """Imports and bulk jobs finished since SINCE whose counters differ from the outcomes they count.

    An import's `created` / `updated` count its entity's `import.create` / `import.update` audit
    rows, `flagged` its `import_flags` rows; a bulk job's `processed_count`, `failed_count` and
    `skipped_count` count its items by status.
    """
    h, a, f = schema.import_history, schema.audit_log, schema.import_flags
    b, i = schema.bulk_jobs, schema.bulk_job_items

    def audits(op: str) -> sa.ScalarSelect:
        return (
            sa.select(sa.func.count())
            .where(a.c.change_set_id == h.c.id, a.c.operation == op, a.c.entity_type == h.c.type)
            .scalar_subquery()
        )

    flags = sa.select(sa.func.count()).where(f.c.import_id == h.c.id).scalar_subquery()
    imp = sa.select(
        h.c.id,
        sa.literal("import").label("kind"),
        h.c.created.label("counted_a"),
        audits("import.create").label("found_a"),
        h.c.updated.label("counted_b"),
        audits("import.update").label("found_b"),
        h.c.flagged.label("counted_c"),
        flags.label("found_c"),
    ).where(
        h.c.status.in_(["completed", "rolled_back", "failed", "cancelled"]),
        h.c.dry_run == sa.false(),
        h.c.finished_at >= since,
    )
    if account_id is not None:
        imp = imp.where(h.c.account_id == account_id)

    def items(*statuses: str) -> sa.ScalarSelect:
        return sa.select(sa.func.count()).where(i.c.bulk_job_id == b.c.id, i.c.status.in_(statuses)).scalar_subquery()

    bulk = sa.select(
        b.c.id,
        sa.literal("bulk_job").label("kind"),
        b.c.processed_count.label("counted_a"),
        items("succeeded", "failed", "skipped").label("found_a"),
        b.c.failed_count.label("counted_b"),
        items("failed").label("found_b"),
        b.c.skipped_count.label("counted_c"),
        items("skipped").label("found_c"),
    ).where(b.c.status.in_(["completed", "failed", "cancelled"]), b.c.mode == "execute", b.c.finished_at >= since)
    if account_id is not None:
        bulk = bulk.where(b.c.account_id == account_id)
    both = sa.union_all(imp, bulk).subquery()
    q = sa.select(both).where(
        (both.c.counted_a != both.c.found_a)
        | (both.c.counted_b != both.c.found_b)
        | (both.c.counted_c != both.c.found_c)
    )
    return _finding(conn, q)
