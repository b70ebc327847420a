"""Change sets with chosen times and outcomes, written through the capabilities' own tables."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from connectors.store import RecordStore, changes, history, schema

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


def add_import(
    store: RecordStore,
    account: uuid.UUID,
    *,
    status: str = "completed",
    started: timedelta = timedelta(hours=1),
    seconds: float | None = 10.0,
    created: int = 5,
    errors: int = 0,
    run_id: str | None = None,
    failed_rows_path: str | None = None,
) -> uuid.UUID:
    """An import that started STARTED before NOW and took SECONDS (None: not finished)."""
    id_ = uuid.uuid4()
    start = NOW - started
    with store.begin() as conn:
        history.insert(
            conn,
            id=id_,
            account_id=account,
            type="candidates",
            file="f.csv",
            status=status,
            started_at=start,
            finished_at=start + timedelta(seconds=seconds) if seconds is not None else None,
            created=created,
            errors=errors,
            rows_read=created + errors,
            dagster_run_id=run_id,
            failed_rows_path=failed_rows_path,
        )
    return id_


def add_bulk_job(
    store: RecordStore,
    account: uuid.UUID,
    *,
    operation: str = "status_update",
    status: str = "completed",
    started: timedelta = timedelta(hours=1),
    seconds: float | None = 20.0,
    processed: int = 10,
    failed: int = 0,
    mode: str = "execute",
    run_id: str | None = None,
) -> uuid.UUID:
    id_ = uuid.uuid4()
    start = NOW - started
    with store.begin() as conn:
        changes.open_change_set(conn, id=id_, account_id=account, kind="bulk_job")
        conn.execute(
            schema.bulk_jobs.insert().values(
                id=id_,
                account_id=account,
                entity_type="applications",
                operation=operation,
                entity_ids=[],
                status=status,
                mode=mode,
                total_count=processed,
                processed_count=processed,
                failed_count=failed,
                created_at=start,
                started_at=start,
                finished_at=start + timedelta(seconds=seconds) if seconds is not None else None,
                dagster_run_id=run_id,
            )
        )
    return id_


def add_rollback(store: RecordStore, account: uuid.UUID, of: uuid.UUID, *, seconds: float = 3.0) -> uuid.UUID:
    """A finished rollback change set of OF, its counts kept in change_sets."""
    with store.begin() as conn:
        cs = changes.open_change_set(conn, account_id=account, kind="rollback", rollback_of=of)
        # as an import's rollback keeps them: per entity
        changes.finish_change_set(
            conn,
            cs,
            status="completed",
            counts={"deleted": {"candidates": 3, "jobs": 1}, "restored": {"candidates": 1}, "kept": {}},
        )
        conn.execute(
            schema.change_sets.update()
            .where(schema.change_sets.c.id == cs.id)
            .values(opened_at=NOW - timedelta(minutes=30), finished_at=NOW - timedelta(minutes=30, seconds=-seconds))
        )
    return cs.id


def slug(store: RecordStore, account: uuid.UUID) -> str:
    with store.engine.connect() as conn:
        return conn.scalar(sa.select(schema.accounts.c.slug).where(schema.accounts.c.id == account))
