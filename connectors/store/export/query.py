"""The export's SELECT (columns, related fields joined, filter, account) and how it is streamed.

Rows are read in batches through a server-side cursor on PostgreSQL (`stream_results` +
`yield_per`; psycopg names the cursor) and SQLite's own stepping cursor, so memory stays flat
whatever the row count. `COPY (SELECT ...) TO STDOUT` of the same statement (`copy.py`) is
PostgreSQL's fast path for CSV and Parquet.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import sqlalchemy as sa

from connectors.store.export import fields as F
from connectors.store.export.filters import Filter, FilterError, account_conditions, compile_filter

DEFAULT_BATCH_ROWS = 10_000


@dataclass(frozen=True)
class Column:
    """One column of the file: the field it holds and its header."""

    field: str
    header: str


def parse_columns(spec: str | Sequence[str] | None) -> list[Column]:
    """`"email,stage:Stage"` or `["email", "stage:Stage"]` -> columns in that order (header after `:`)."""
    if spec is None:
        return []
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    out: list[Column] = []
    for item in items:
        item = item.strip()
        if not item:
            continue
        name, _, header = item.partition(":")
        out.append(Column(name.strip(), header.strip() or name.strip()))
    return out


@dataclass(frozen=True)
class Query:
    statement: sa.Select
    columns: tuple[Column, ...]
    kinds: tuple[str, ...]


def build_query(entity: str, dialect: str, account_id: uuid.UUID, flt: Filter, columns: Sequence[Column] = ()) -> Query:
    """The SELECT of an export of ENTITY for ACCOUNT_ID: COLUMNS (default: the entity's defaults).

    Raises:
        FilterError: an unknown column, filter field or operator, or a bad value (one line).
    """
    cat = F.catalog(entity, dialect)
    cols = list(columns) or [Column(n, n) for n in cat.defaults]
    headers = [c.header for c in cols]
    dup = sorted({h for h in headers if headers.count(h) > 1})
    if dup:
        raise FilterError(f"column header {dup[0]!r} appears twice: rename one with field:header")
    selected: list[F.Field] = []
    for c in cols:
        try:
            selected.append(cat.resolve(c.field))
        except F.UnknownField as exc:
            raise FilterError(f"column {c.field!r}: {exc}") from None
    where, joins = compile_filter(cat, flt)
    for f in selected:
        if f.join is not None and f.join not in joins:
            joins.append(f.join)
    base = cat.table
    source: sa.FromClause = base
    for j in joins:
        # a related record of another account is never joined, whatever the foreign key says
        on = sa.and_(base.c[j.column] == j.alias.c.id, j.alias.c.account_id == base.c.account_id)
        source = source.outerjoin(j.alias, on)
    stmt = (
        sa.select(*[f.expr.label(f"c{i}") for i, f in enumerate(selected)])
        .select_from(source)
        .where(*account_conditions(cat, account_id), *where)
    )
    return Query(stmt, tuple(cols), tuple(f.kind for f in selected))


def stream_rows(engine: sa.Engine, query: Query, batch_rows: int = DEFAULT_BATCH_ROWS) -> Iterator[list[tuple]]:
    """The query's rows in lists of up to BATCH_ROWS, read through a server-side cursor."""
    with engine.connect() as conn:
        result = conn.execution_options(stream_results=True, yield_per=batch_rows).execute(query.statement)
        for part in result.partitions():
            yield [tuple(r) for r in part]
