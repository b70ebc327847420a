"""One-way syncs from SQL databases into the record store: incremental cursors, history, rollback."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
import sqlalchemy as sa

from connectors.store import RecordStore, schema
from pipelines.syncs.config import load_connection
from pipelines.syncs.engine import rollback_sync, run_sync
from tests.syncs.conftest import BASE, Source, write_connection

apps = schema.applications


def _apps(store: RecordStore, account: uuid.UUID) -> dict[str, sa.Row]:
    with store.engine.connect() as c:
        rows = c.execute(sa.select(apps).where(apps.c.account_id == account)).all()
    return {r.external_id: r for r in rows}


def _connection(tmp_path, monkeypatch, store, account, source: Source, **overrides):
    monkeypatch.setenv("HR_DB_URL", source.url)
    slug = store_slug(store, account)
    return load_connection(write_connection(tmp_path / "syncs", "hr", slug, "HR_DB_URL", **overrides))


def store_slug(store: RecordStore, account: uuid.UUID) -> str:
    with store.engine.connect() as c:
        return c.scalar(sa.select(schema.accounts.c.slug).where(schema.accounts.c.id == account))


def test_incremental_sync_reads_what_changed_and_rollback_undoes_a_run(
    store, account, source, tmp_path, monkeypatch
) -> None:
    source.add(120)
    conn = _connection(tmp_path, monkeypatch, store, account, source)
    first = run_sync(store, conn)
    assert first.status == "completed"
    assert first.counts["records_read"] == 120 and first.counts["created"] == 120
    assert len(_apps(store, account)) == 120

    # nothing changed: nothing read
    again = run_sync(store, conn)
    assert again.counts["records_read"] == 0 and again.counts["created"] == 0
    assert again.cursor == first.cursor

    later = BASE + timedelta(days=10)
    source.edit(["A000005", "A000006"], at=later, stage="interview")
    source.add(3, start=121, at=later)
    third = run_sync(store, conn)
    assert third.counts["records_read"] == 5
    assert (third.counts["created"], third.counts["updated"]) == (3, 2)
    records = _apps(store, account)
    assert records["A000005"].stage == "interview" and len(records) == 123

    undone = rollback_sync(store, account, third.run_id, actor="tester")
    assert undone["status"] == "rolled_back"
    records = _apps(store, account)
    assert len(records) == 120 and records["A000005"].stage == "applied"
