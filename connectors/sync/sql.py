"""A table of another SQL database (PostgreSQL, MySQL/MariaDB, SQLite) by SQLAlchemy URL.

Reads in keyset order (cursor, key): `WHERE cursor > :v OR (cursor = :v AND key > :k) ORDER BY
cursor, key LIMIT n`, one index range per batch whatever the table's size, so an incremental read
costs what changed. Rows whose cursor is NULL are read by a full read only (first, by key).
Writes (a sync out) upsert by key: update the rows that exist, insert the others.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa

from connectors.store.faults import is_transient
from connectors.sync.base import Batch, Position, SyncSourceError, jsonable, text_table


def _bind(column: sa.Column, value: Any) -> Any:
    """A JSON-held cursor or key value back in its column's Python type."""
    if value is None:
        return None
    try:
        python_type = column.type.python_type
    except NotImplementedError:
        return value
    if python_type is datetime and isinstance(value, str):
        return datetime.fromisoformat(value)
    if python_type is date and isinstance(value, str):
        return date.fromisoformat(value)
    if python_type in (int, float) and isinstance(value, str):
        return python_type(value)
    return value


class SqlConnector:
    """One table of a database: TABLE (`schema.table` allowed), its KEY column and CURSOR column."""

    def __init__(self, url: str, table: str, *, key: str, cursor: str | None = None, name: str = "sql") -> None:
        self.name = name
        self.engine = sa.create_engine(url, pool_pre_ping=True)
        schema_name, _, table_name = table.rpartition(".")
        try:
            self.table = sa.Table(table_name, sa.MetaData(), autoload_with=self.engine, schema=schema_name or None)
        except sa.exc.NoSuchTableError:
            raise SyncSourceError(f"{name}: no table {table!r} in the database") from None
        except sa.exc.DBAPIError as exc:
            raise SyncSourceError(
                f"{name}: cannot reach the database: {type(exc.orig).__name__}", transient=True
            ) from None
        for role, column in (("key", key), ("cursor", cursor)):
            if column is not None and column not in self.table.c:
                raise SyncSourceError(f"{name}: table {table!r} has no {role} column {column!r}")
        self.key = self.table.c[key]
        self.cursor = self.table.c[cursor] if cursor else None

    def columns(self) -> list[str]:
        return [c.name for c in self.table.c]

    def read_batches(self, since: Position | None, batch_size: int) -> Iterator[Batch]:
        t, key, cur = self.table, self.key, self.cursor
        if cur is None:
            yield from self._by_key(since.key if since else None, batch_size, None)
            return
        if since is None:
            # a full read: rows without a cursor value first (by key), then the rest in cursor order
            yield from self._by_key(None, batch_size, cur.is_(None))
        value, last_key = (None, None) if since is None else (_bind(cur, since.value), _bind(key, since.key))
        while True:
            q = sa.select(t).where(cur.is_not(None)).order_by(cur, key).limit(batch_size)
            if value is not None:
                q = q.where(sa.or_(cur > value, sa.and_(cur == value, key > last_key)))
            rows = self._fetch(q)
            if not rows:
                return
            last = rows[-1]._mapping
            value, last_key = last[cur.name], last[key.name]
            yield Batch(
                text_table(self.columns(), [tuple(r) for r in rows]), Position(jsonable(value), jsonable(last_key))
            )
            if len(rows) < batch_size:
                return

    def _by_key(self, after: Any, batch_size: int, where: sa.ColumnElement | None) -> Iterator[Batch]:
        t, key = self.table, self.key
        after = _bind(key, after)
        while True:
            q = sa.select(t).order_by(key).limit(batch_size)
            if where is not None:
                q = q.where(where)
            if after is not None:
                q = q.where(key > after)
            rows = self._fetch(q)
            if not rows:
                return
            after = rows[-1]._mapping[key.name]
            yield Batch(text_table(self.columns(), [tuple(r) for r in rows]), None)
            if len(rows) < batch_size:
                return

    def read_keys(self, batch_size: int) -> Iterator[list[str]]:
        after = None
        while True:
            q = sa.select(self.key).order_by(self.key).limit(batch_size)
            if after is not None:
                q = q.where(self.key > after)
            keys = [r[0] for r in self._fetch(q)]
            if not keys:
                return
            after = keys[-1]
            yield [str(k) for k in keys]
            if len(keys) < batch_size:
                return

    def _fetch(self, q: sa.Select) -> Sequence[sa.Row]:
        try:
            with self.engine.connect() as conn:
                return conn.execute(q).all()
        except sa.exc.DBAPIError as exc:
            # the driver's message may hold the URL: name the error's kind only
            why = type(exc.orig).__name__
            raise SyncSourceError(
                f"{self.name}: reading {self.table.name} failed: {why}", transient=is_transient(exc)
            ) from None

    def write_batches(self, rows: Sequence[dict[str, Any]], *, batch: str | None = None) -> tuple[int, int]:
        """Upsert ROWS (column -> value) by key in one transaction; (inserted, updated). An upsert
        is idempotent: BATCH (the batch's name) is not needed."""
        t, key = self.table, self.key
        if not rows:
            return 0, 0
        keys = [_bind(key, r[key.name]) for r in rows]
        inserted = updated = 0
        try:
            with self.engine.begin() as conn:
                existing = {str(k) for (k,) in conn.execute(sa.select(key).where(key.in_(keys)))}
                new = [r for r in rows if str(r[key.name]) not in existing]
                old = [r for r in rows if str(r[key.name]) in existing]
                if new:
                    conn.execute(t.insert(), [{c: _bind(t.c[c], v) for c, v in r.items()} for r in new])
                    inserted = len(new)
                for r in old:
                    values = {c: _bind(t.c[c], v) for c, v in r.items() if c != key.name}
                    conn.execute(t.update().where(key == _bind(key, r[key.name])).values(values))
                    updated += 1
        except sa.exc.DBAPIError as exc:
            raise SyncSourceError(f"{self.name}: writing {t.name} failed: {type(exc.orig).__name__}") from None
        return inserted, updated

    def close(self) -> None:
        self.engine.dispose()
