"""Helpers for import engine tests: write files, count and read real rows."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from connectors.store import RecordStore, schema

HEADER = "Application ID,First Name,Last Name,Email,Job Code,Stage,Applied At,Years Experience"


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


def apps_csv(tmp_path: Path, rows: list[str], name: str = "apps.csv") -> Path:
    return write(tmp_path / name, "\n".join([HEADER, *rows]) + "\n")


def count(store: RecordStore, table: str, account: uuid.UUID) -> int:
    t = schema.metadata.tables[table]
    with store.engine.connect() as c:
        return c.execute(sa.select(sa.func.count()).select_from(t).where(t.c.account_id == account)).scalar()


def rows(store: RecordStore, table: str, account: uuid.UUID, order_by: str = "external_id") -> list:
    t = schema.metadata.tables[table]
    with store.engine.connect() as c:
        return c.execute(sa.select(t).where(t.c.account_id == account).order_by(t.c[order_by])).all()


def file_materializations(result: Any) -> list:
    """The materializations of `imported_file` in a run's result (the run also materializes the record assets it wrote)."""
    return [
        m
        for m in result.asset_materializations_for_node("imported_file")
        if m.asset_key.to_user_string() == "imported_file"
    ]
