"""Reading and writing the records a batch works on: rows, their images, their tags."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from connectors.store import schema
from connectors.store.dialect import dialect_of


def jsonable(value: Any) -> Any:
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


def image(row: sa.Row, cols: Iterable[str]) -> dict[str, Any]:
    """The JSON image of some columns of a record."""
    return {c: jsonable(getattr(row, c)) for c in cols}


def load_records(
    conn: sa.Connection,
    table: sa.Table,
    account_id: uuid.UUID,
    ids: Sequence[uuid.UUID],
    *,
    include_deleted: bool = False,
) -> dict[uuid.UUID, sa.Row]:
    """The account's records among `ids`, locked for the batch; soft-deleted ones only on request."""
    if not ids:
        return {}
    stmt = sa.select(table).where(table.c.id.in_(ids), table.c.account_id == account_id)
    if "deleted_at" in table.c and not include_deleted:
        stmt = stmt.where(table.c.deleted_at.is_(None))
    return {row.id: row for row in conn.execute(dialect_of(conn).for_update(stmt))}


def load_tags(
    conn: sa.Connection, account_id: uuid.UUID, entity_type: str, ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, list[str]]:
    """The sorted tags of each record."""
    t = schema.tags
    out: dict[uuid.UUID, list[str]] = {i: [] for i in ids}
    if ids:
        rows = conn.execute(
            sa.select(t.c.entity_id, t.c.tag).where(
                t.c.account_id == account_id, t.c.entity_type == entity_type, t.c.entity_id.in_(ids)
            )
        )
        for entity_id, tag in rows:
            out[entity_id].append(tag)
    return {k: sorted(v) for k, v in out.items()}


def write_tags(
    conn: sa.Connection,
    account_id: uuid.UUID,
    entity_type: str,
    now: datetime,
    to_add: Sequence[tuple[uuid.UUID, str]],
    to_remove: Sequence[tuple[uuid.UUID, str]],
) -> None:
    """Remove and add (record id, tag) pairs."""
    t = schema.tags
    if to_remove:
        conn.execute(
            t.delete().where(
                t.c.account_id == account_id,
                t.c.entity_type == entity_type,
                t.c.entity_id == sa.bindparam("b_id"),
                t.c.tag == sa.bindparam("b_tag"),
            ),
            [{"b_id": i, "b_tag": tag} for i, tag in to_remove],
        )
    if to_add:
        conn.execute(
            t.insert(),
            [
                {"account_id": account_id, "entity_type": entity_type, "entity_id": i, "tag": tag, "created_at": now}
                for i, tag in to_add
            ],
        )
