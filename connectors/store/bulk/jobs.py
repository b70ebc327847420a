"""The bulk_jobs and bulk_job_items rows the service reads and writes: create, find, list, plan,
confirm, cancel, rollback, failed items. Callers hold the connection; every read by job id is
scoped to an account unless said otherwise.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from connectors.store import changes, schema
from connectors.store.bulk.base import NOT_FOUND
from connectors.store.bulk.selection import insert_items
from connectors.store.dialect import dialect_of

jobs_t = schema.bulk_jobs
items_t = schema.bulk_job_items

# every column except entity_ids, which can hold millions of ids
SUMMARY_COLUMNS = [c for c in jobs_t.c if c.name != "entity_ids"]


def insert_job(
    conn: sa.Connection,
    account_id: uuid.UUID,
    *,
    created_by: uuid.UUID | None,
    entity_type: str,
    operation: str,
    params: dict[str, Any],
    entity_ids: Sequence[uuid.UUID | str],
    mode: str,
    now: datetime,
    rollback_of: uuid.UUID | None = None,
    selection: sa.Select | None = None,
    summary: dict[str, Any] | None = None,
) -> uuid.UUID:
    """A new pending job and its items, one per entity id (de-duplicated, valid uuids or canonical strings).

    With `selection` (a SELECT of record ids, `selection.id_select`) the items are those ids instead,
    written by one INSERT ... SELECT; `entity_ids` is then ignored.
    """
    job_id = uuid.uuid4()
    changes.open_change_set(conn, id=job_id, account_id=account_id, kind="bulk_job", rollback_of=rollback_of)
    conn.execute(
        jobs_t.insert().values(
            id=job_id,
            account_id=account_id,
            created_by=created_by,
            entity_type=entity_type,
            operation=operation,
            entity_ids=[],
            params=params,
            status="pending",
            total_count=len(entity_ids),
            mode=mode,
            rollback_of=rollback_of,
            summary=summary or {},
            created_at=now,
            updated_at=now,
        )
    )
    if selection is not None:
        total = insert_items(conn, job_id, selection)
        conn.execute(jobs_t.update().where(jobs_t.c.id == job_id).values(total_count=total))
    else:
        load_items(conn, job_id, entity_ids)
    return job_id


def find_plan(conn: sa.Connection, account_id: uuid.UUID, plan: str) -> sa.Row | None:
    """The account's job whose current plan id is PLAN, or whose id is PLAN (without `entity_ids`)."""
    cond = jobs_t.c.plan_id == plan
    with contextlib.suppress(ValueError):
        cond = sa.or_(cond, jobs_t.c.id == uuid.UUID(plan))
    stmt = sa.select(*SUMMARY_COLUMNS).where(jobs_t.c.account_id == account_id, cond)
    return conn.execute(stmt.order_by(jobs_t.c.created_at.desc()).limit(1)).one_or_none()


def load_items(conn: sa.Connection, job_id: uuid.UUID, entity_ids: Sequence[uuid.UUID | str]) -> None:
    """Write one pending item per entity id, numbered from 0.

    The ids are already de-duplicated and valid: uuid.UUID objects or canonical uuid strings.
    PostgreSQL gets them in one COPY (a million in a few seconds); others use executemany.
    """
    dialect_of(conn).write_items(conn, job_id, entity_ids)


def find(
    conn: sa.Connection, account_id: uuid.UUID, job_id: uuid.UUID, *, lock: bool = False, full: bool = False
) -> sa.Row | None:
    """The account's job (without `entity_ids` unless `full`), locked on request."""
    stmt = sa.select(*(jobs_t.c if full else SUMMARY_COLUMNS)).where(
        jobs_t.c.id == job_id, jobs_t.c.account_id == account_id
    )
    return conn.execute(dialect_of(conn).for_update(stmt) if lock else stmt).one_or_none()


def summary_row(conn: sa.Connection, job_id: uuid.UUID) -> sa.Row:
    """A job of any account, without `entity_ids` (for a run that already holds its id)."""
    return conn.execute(sa.select(*SUMMARY_COLUMNS).where(jobs_t.c.id == job_id)).one()


def launch_row(conn: sa.Connection, job_id: uuid.UUID) -> sa.Row | None:
    """(id, account_id, entity_type, operation, summary, status) of a job of any account, for launching its run."""
    stmt = sa.select(
        jobs_t.c.id, jobs_t.c.account_id, jobs_t.c.entity_type, jobs_t.c.operation, jobs_t.c.summary, jobs_t.c.status
    )
    return conn.execute(stmt.where(jobs_t.c.id == job_id)).one_or_none()


def set_run_id(conn: sa.Connection, job_id: uuid.UUID, run_id: str) -> None:
    """Record the Dagster run launched for the job, unless the job already moved on (a run took it)."""
    conn.execute(
        jobs_t.update()
        .where(jobs_t.c.id == job_id, jobs_t.c.status.in_(["pending", "failed"]))
        .values(dagster_run_id=run_id)
    )


def forget_run_id(conn: sa.Connection, job_id: uuid.UUID, run_id: str) -> None:
    """Clear the job's run id RUN_ID: that run was never launched (the job ended before its turn)."""
    conn.execute(
        jobs_t.update().where(jobs_t.c.id == job_id, jobs_t.c.dagster_run_id == run_id).values(dagster_run_id=None)
    )


def entity_ids(conn: sa.Connection, job_id: uuid.UUID) -> list[uuid.UUID]:
    """The job's record ids in item order."""
    return list(
        conn.scalars(sa.select(items_t.c.entity_id).where(items_t.c.bulk_job_id == job_id).order_by(items_t.c.seq))
    )


def page(
    conn: sa.Connection,
    account_id: uuid.UUID,
    *,
    status: str | None,
    limit: int,
    after_job: uuid.UUID | None = None,
    created_before: datetime | None = None,
) -> list[sa.Row]:
    """The account's jobs newest first (created_at, then id): those after `after_job` in that
    order, or created before `created_before`."""
    stmt = sa.select(*SUMMARY_COLUMNS).where(jobs_t.c.account_id == account_id)
    if status is not None:
        stmt = stmt.where(jobs_t.c.status == status)
    if after_job is not None:
        # compared with the stored value itself: no round trip through Python's datetime
        ref = sa.select(jobs_t.c.created_at).where(jobs_t.c.id == after_job).scalar_subquery()
        stmt = stmt.where(
            sa.or_(jobs_t.c.created_at < ref, sa.and_(jobs_t.c.created_at == ref, jobs_t.c.id < after_job))
        )
    elif created_before is not None:
        stmt = stmt.where(jobs_t.c.created_at < created_before)
    stmt = stmt.order_by(jobs_t.c.created_at.desc(), jobs_t.c.id.desc()).limit(limit)
    return list(conn.execute(stmt))


def update_job(conn: sa.Connection, job_id: uuid.UUID, *, only_if_status: str | None = None, **values: Any) -> None:
    stmt = jobs_t.update().where(jobs_t.c.id == job_id)
    if only_if_status is not None:
        stmt = stmt.where(jobs_t.c.status == only_if_status)
    conn.execute(stmt.values(**values))


def plan_items(conn: sa.Connection, job_id: uuid.UUID, *, ran: bool, limit: int) -> tuple[list[sa.Row], list[sa.Row]]:
    """(changes, problems) of a job's plan, or of a dry run that `ran`: the first `limit` of each by seq."""
    ok = (items_t.c.status == "succeeded") if ran else sa.and_(items_t.c.status == "pending", items_t.c.error.is_(None))
    base = sa.select(items_t.c.seq, items_t.c.entity_id, items_t.c.before, items_t.c.after, items_t.c.error).where(
        items_t.c.bulk_job_id == job_id
    )
    changes = conn.execute(base.where(ok).order_by(items_t.c.seq).limit(limit)).all()
    problems = conn.execute(base.where(sa.not_(ok)).order_by(items_t.c.seq).limit(limit)).all()
    return changes, problems


def count_not_found(conn: sa.Connection, job_id: uuid.UUID) -> int:
    """The job's items whose record was not found."""
    stmt = (
        sa.select(sa.func.count())
        .select_from(items_t)
        .where(items_t.c.bulk_job_id == job_id, items_t.c.error.like(f"%{NOT_FOUND}"))
    )
    return conn.scalar(stmt) or 0


def live_rollback(conn: sa.Connection, job_id: uuid.UUID) -> uuid.UUID | None:
    """The job's rollback that has not failed or been cancelled, if any."""
    return conn.scalar(
        sa.select(jobs_t.c.id).where(jobs_t.c.rollback_of == job_id, jobs_t.c.status.notin_(["failed", "cancelled"]))
    )


def succeeded_ids(conn: sa.Connection, job_id: uuid.UUID) -> list[uuid.UUID]:
    """The records the job changed, in item order."""
    stmt = (
        sa.select(items_t.c.entity_id)
        .where(items_t.c.bulk_job_id == job_id, items_t.c.status == "succeeded")
        .order_by(items_t.c.seq)
    )
    return list(conn.scalars(stmt))


def failed_items(conn: sa.Connection, job_id: uuid.UUID, *, chunk_rows: int) -> Iterator[list[sa.Row]]:
    """The job's failed items (entity_id as text, error, seq, status) in chunks, from a server-side cursor."""
    stmt = (
        sa.select(
            dialect_of(conn).uuid_canonical(items_t.c.entity_id), items_t.c.error, items_t.c.seq, items_t.c.status
        )
        .where(items_t.c.bulk_job_id == job_id, items_t.c.status == "failed")
        .order_by(items_t.c.seq)
    )
    result = conn.execution_options(stream_results=True, yield_per=chunk_rows).execute(stmt)
    for part in result.partitions():
        yield list(part)


def report_items(conn: sa.Connection, job_id: uuid.UUID, *, limit: int = 100) -> tuple[list[dict], list[dict]]:
    """(changes, failed and skipped items) of a job that ran: the first `limit` of each by seq, as dicts."""
    changes = (
        sa.select(items_t.c.entity_id, items_t.c.before, items_t.c.after)
        .where(items_t.c.bulk_job_id == job_id, items_t.c.status == "succeeded")
        .order_by(items_t.c.seq)
        .limit(limit)
    )
    problems = (
        sa.select(items_t.c.entity_id, items_t.c.status, items_t.c.error)
        .where(items_t.c.bulk_job_id == job_id, items_t.c.status.in_(["failed", "skipped"]))
        .order_by(items_t.c.seq)
        .limit(limit)
    )
    return [dict(r) for r in conn.execute(changes).mappings()], [dict(r) for r in conn.execute(problems).mappings()]
