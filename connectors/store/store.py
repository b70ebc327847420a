"""Engine construction and the account-scoped entry point to the record store."""

from __future__ import annotations

import datetime
import decimal
import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from connectors import settings
from connectors.store import migrate, schema


class AccountNotFound(LookupError):
    pass


def normalize_url(url: str) -> str:
    """Use psycopg 3 for PostgreSQL whatever driver-less spelling the user gave."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def _json_default(value: Any) -> Any:
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return float(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def json_dumps(value: Any) -> str:
    """JSON for the store's JSON columns: UUIDs, datetimes and decimals become strings/numbers."""
    return json.dumps(value, default=_json_default, ensure_ascii=False)


class UnsupportedDatabase(ValueError):
    """The record store URL is not a SQLite or PostgreSQL database URL."""


def make_engine(url: str | None = None) -> sa.Engine:
    url = normalize_url(url or settings.database_url())
    try:
        parsed = sa.make_url(url)
    except sa.exc.ArgumentError:
        raise UnsupportedDatabase(
            "the record store URL is not a database URL: use sqlite:///PATH or postgresql://USER@HOST/DB "
            f"({settings.DATABASE_URL_ENV})"
        ) from None
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise UnsupportedDatabase(
            f"the record store is SQLite or PostgreSQL, not {parsed.get_backend_name()} "
            f"({parsed.render_as_string(hide_password=True)}): set {settings.DATABASE_URL_ENV} to "
            "sqlite:///PATH or postgresql://USER@HOST/DB"
        )
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, connect_args={"timeout": 30}, json_serializer=json_dumps)
        sa.event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return sa.create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10, json_serializer=json_dumps)


class RecordStore:
    """One record store database. Every method that reads or writes records takes an account."""

    def __init__(self, url: str | None = None, *, check: bool = True) -> None:
        self.engine = make_engine(url)
        if check:
            migrate.check_schema(self.engine)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @property
    def url(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)

    @contextmanager
    def begin(self) -> Iterator[sa.Connection]:
        with self.engine.begin() as conn:
            yield conn

    def dispose(self) -> None:
        self.engine.dispose()

    def ensure_account(self, slug: str, name: str | None = None) -> uuid.UUID:
        """The account's id, creating the account when it does not exist."""
        with self.begin() as conn:
            found = conn.scalar(sa.select(schema.accounts.c.id).where(schema.accounts.c.slug == slug))
            if found is not None:
                return found
            account_id = uuid.uuid4()
            conn.execute(schema.accounts.insert().values(id=account_id, slug=slug, name=name or slug))
            return account_id

    def account_id(self, slug: str) -> uuid.UUID:
        with self.engine.connect() as conn:
            found = conn.scalar(sa.select(schema.accounts.c.id).where(schema.accounts.c.slug == slug))
        if found is None:
            raise AccountNotFound(f"no account with slug {slug!r}: create it with `bulkops accounts create {slug}`")
        return found
