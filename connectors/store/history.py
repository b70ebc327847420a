"""The import history: one row per import of a file (`import_history`), and its queries.

The import engine, the CLI and the run sensors read and write history rows through these
functions only; each takes the caller's connection, so a row changes in the caller's
transaction (a batch's counters commit with its records).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from connectors.store import changes
from connectors.store.schema import import_flags
from connectors.store.schema import import_history as h

# the statuses of an import a later run of the same content picks up after its committed rows
RESUMABLE = ("pending", "processing", "failed", "cancelled")
# what a listing shows of each import
LISTED = (
    "id",
    "started_at",
    "type",
    "file",
    "created",
    "updated",
    "skipped",
    "errors",
    "status",
    "flagged",
    "rows_read",
    "dry_run",
    "failed_rows_path",
    "error_message",
    "finished_at",
)


# the word users say for an import's records, where it is not the entity's name: a resume import
# (or a spreadsheet of candidates) makes applicants
TYPE_WORDS = {"candidates": "applicants"}


def type_word(type_: str | None) -> str:
    """The import type as history output shows it: `applicants` for candidates, else the entity's name."""
    return TYPE_WORDS.get(type_ or "", type_ or "")


def row(conn: sa.Connection, import_id: uuid.UUID) -> sa.Row:
    """The history row of IMPORT_ID (it must exist)."""
    return conn.execute(sa.select(h).where(h.c.id == import_id)).one()


def partition_key(conn: sa.Connection, import_id: uuid.UUID) -> str | None:
    """The imported_file partition the import ran for (None: run outside the asset, or no such import)."""
    return conn.scalar(sa.select(h.c.partition_key).where(h.c.id == import_id))


def row_of_account(conn: sa.Connection, account_id: uuid.UUID, import_id: uuid.UUID) -> sa.Row | None:
    """The history row of IMPORT_ID when the account has it, else None."""
    return conn.execute(sa.select(h).where(h.c.id == import_id, h.c.account_id == account_id)).first()


def insert(conn: sa.Connection, **values: Any) -> None:
    """A new history row with VALUES (the id among them), in the change set it opens."""
    changes.open_change_set(conn, id=values["id"], account_id=values["account_id"], kind="import")
    conn.execute(h.insert().values(**values))


def update(conn: sa.Connection, import_id: uuid.UUID, **values: Any) -> None:
    """Set VALUES on the history row of IMPORT_ID."""
    conn.execute(h.update().where(h.c.id == import_id).values(**values))


def _same_content(account_id: uuid.UUID, entity: str, sha256: str) -> sa.ColumnElement[bool]:
    """Real (not dry-run) imports of the same content into the same entity of the account."""
    return (
        (h.c.account_id == account_id)
        & (h.c.type == entity)
        & (h.c.content_sha256 == sha256)
        & (h.c.dry_run == sa.false())
    )


def last_completed(conn: sa.Connection, account_id: uuid.UUID, entity: str, sha256: str) -> sa.Row | None:
    """(id, rows_read) of the newest completed import of this content, or None."""
    return conn.execute(
        sa.select(h.c.id, h.c.rows_read)
        .where(_same_content(account_id, entity, sha256), h.c.status == "completed")
        .order_by(h.c.started_at.desc())
        .limit(1)
    ).first()


def last_resumable(conn: sa.Connection, account_id: uuid.UUID, entity: str, sha256: str) -> uuid.UUID | None:
    """The id of the newest unfinished import of this content (one of RESUMABLE), or None."""
    return conn.execute(
        sa.select(h.c.id)
        .where(_same_content(account_id, entity, sha256), h.c.status.in_(RESUMABLE))
        .order_by(h.c.started_at.desc())
        .limit(1)
    ).scalar()


def move_source(conn: sa.Connection, old: str, new: str, sha256: str) -> int:
    """Point the rows of this content that name OLD as their source at NEW; how many."""
    moved = h.update().where(h.c.source_path == old, h.c.content_sha256 == sha256).values(source_path=new)
    return conn.execute(moved).rowcount


def listing(
    conn: sa.Connection,
    account_id: uuid.UUID,
    *,
    entity: str | None = None,
    limit: int = 50,
    dagster_run_id: str | None = None,
) -> list[dict]:
    """The account's imports, newest first, as dicts of the LISTED columns.

    `entity`: only imports of that entity; `dagster_run_id`: only those that run wrote.
    """
    q = sa.select(*(h.c[c] for c in LISTED)).where(h.c.account_id == account_id)
    if entity is not None:
        q = q.where(h.c.type == entity)
    if dagster_run_id is not None:
        q = q.where(h.c.dagster_run_id == dagster_run_id)
    q = q.order_by(h.c.started_at.desc(), h.c.id).limit(limit)
    return [dict(r._mapping) for r in conn.execute(q)]


def resolve_flags(conn: sa.Connection, import_id: uuid.UUID, at: datetime) -> int:
    """Mark the import's unresolved duplicate flags resolved AT; how many."""
    f = import_flags
    return conn.execute(
        f.update().where(f.c.import_id == import_id, f.c.resolved_at.is_(None)).values(resolved_at=at)
    ).rowcount
