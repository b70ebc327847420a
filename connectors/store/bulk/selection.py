"""A bulk job's records chosen by filter: the export filter language, resolved to items in SQL.

The filter (`connectors.store.export.filters`) is compiled on the entity's export catalog and its
matching ids go straight into `bulk_job_items` with one `INSERT ... SELECT` (numbered by id),
never through Python. The account is always in the WHERE: another account's records are never
selected, whatever the filter says.
"""

from __future__ import annotations

import uuid
from dataclasses import asdict
from typing import Any

import sqlalchemy as sa

from connectors.store import registry, schema
from connectors.store.dialect import ANALYZE_ITEMS, dialect_of
from connectors.store.export import fields as F
from connectors.store.export.filters import Filter, FilterError, account_conditions, compile_filter, make_filter

items_t = schema.bulk_job_items

# the records an operation's ids name, when they are not the entity's own (contracts `create`
# takes the applications it creates contracts for)
SELECTED_ENTITY: dict[tuple[str, str], str] = {("contracts", "create"): "applications"}


def selected_entity(entity_type: str, operation: str) -> str:
    """The entity whose records a filter of an ENTITY_TYPE OPERATION bulk job selects."""
    return SELECTED_ENTITY.get((entity_type, operation), registry.canonical(entity_type))


def parse(spec: Any) -> Filter:
    """A Filter from a list of conditions (texts or `{field, op, value}`), or `{"where": [...], "include_deleted"}`.

    Raises:
        FilterError: a malformed condition (one line).
    """
    include_deleted = False
    conditions = spec
    if isinstance(spec, dict):
        unknown = set(spec) - {"where", "include_deleted"}
        if unknown:
            raise FilterError(f"filter: unknown key(s) {', '.join(sorted(unknown))} (use where, include_deleted)")
        conditions = spec.get("where") or []
        include_deleted = bool(spec.get("include_deleted", False))
    if isinstance(conditions, str):
        conditions = [conditions]
    if not isinstance(conditions, list | tuple):
        raise FilterError("filter must be a list of conditions like 'stage=review' or {field, op, value}")
    if not conditions:
        raise FilterError("filter has no condition: give at least one (e.g. stage=review), or entity_ids")
    return make_filter(conditions, include_deleted=include_deleted)


def stored(flt: Filter, entity: str) -> dict[str, Any]:
    """The filter as the bulk job keeps it (and the API shows it): typed conditions and words."""
    return {
        "where": [asdict(c) for c in flt.conditions],
        "include_deleted": flt.include_deleted,
        "words": flt.words(entity),
    }


def id_select(entity: str, dialect: str, account_id: uuid.UUID, flt: Filter) -> sa.Select:
    """SELECT id of ENTITY's records of ACCOUNT_ID matching FLT.

    Raises:
        FilterError: an unknown field or operator, or a bad value (one line).
    """
    cat = F.catalog(entity, dialect)
    where, joins = compile_filter(cat, flt)
    base = cat.table
    source: sa.FromClause = base
    for j in joins:
        # a related record of another account is never joined, whatever the foreign key says
        on = sa.and_(base.c[j.column] == j.alias.c.id, j.alias.c.account_id == base.c.account_id)
        source = source.outerjoin(j.alias, on)
    return sa.select(base.c.id).select_from(source).where(*account_conditions(cat, account_id), *where)


def insert_items(conn: sa.Connection, job_id: uuid.UUID, ids: sa.Select) -> int:
    """One pending item per id IDS selects, numbered from 0 in id order, in one INSERT ... SELECT; the count."""
    sub = ids.subquery()
    numbered = sa.select(
        sa.literal(job_id, sa.Uuid()),
        sa.func.row_number().over(order_by=sub.c.id) - 1,
        sub.c.id,
        sa.literal("pending"),
    )
    conn.execute(items_t.insert().from_select(["bulk_job_id", "seq", "entity_id", "status"], numbered))
    n = conn.scalar(sa.select(sa.func.count()).select_from(items_t).where(items_t.c.bulk_job_id == job_id)) or 0
    if n >= ANALYZE_ITEMS:
        dialect_of(conn).analyze(conn, items_t)
    return n
