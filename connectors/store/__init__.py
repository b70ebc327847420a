"""The record store: schema, migrations and the write paths every flow shares."""

from connectors.store.migrate import SchemaOutOfDate, check_schema
from connectors.store.store import AccountNotFound, RecordStore, UnsupportedDatabase, make_engine, normalize_url

__all__ = [
    "AccountNotFound",
    "RecordStore",
    "SchemaOutOfDate",
    "UnsupportedDatabase",
    "check_schema",
    "make_engine",
    "normalize_url",
]
