"""Two-way and one-way-out syncs with SQL databases: edits on both sides, no echo, manual conflicts held."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
import sqlalchemy as sa

from connectors.store import RecordStore, changes, schema
from connectors.store import syncs as sync_runs
from pipelines.syncs.config import load_connection
from pipelines.syncs.engine import run_sync
from tests.syncs.conftest import BASE, Source, hr_applications, write_connection
from tests.syncs.test_sql_sync import store_slug

# real databases, Dagster runs and local servers: each test takes seconds
pytestmark = pytest.mark.slow

apps = schema.applications


def _edit_in_store(store: RecordStore, account: uuid.UUID, key: str, stage: str) -> None:
    """An edit by another change set, as a bulk job or an import makes one."""
    with store.begin() as c:
        rec = c.execute(sa.select(apps).where(apps.c.account_id == account, apps.c.external_id == key)).one()
        cs = changes.open_change_set(c, account_id=account, kind="document_import", actor="recruiter")
        c.execute(apps.update().where(apps.c.id == rec.id).values(stage=stage))
        changes.write_audit_rows(
            c, cs, "edit", [("applications", rec.id, {"stage": rec.stage}, {"stage": stage})], now=BASE
        )


def _source_stage(source: Source, key: str) -> str:
    with source.engine.connect() as c:
        return c.scalar(sa.select(hr_applications.c.stage).where(hr_applications.c.id == key))


def _store_stage(store: RecordStore, account: uuid.UUID, key: str) -> str:
    with store.engine.connect() as c:
        return c.scalar(sa.select(apps.c.stage).where(apps.c.account_id == account, apps.c.external_id == key))


def test_two_way_sync_carries_edits_both_ways_without_echo(store, account, source, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HR_DB_URL", source.url)
    source.add(10)
    path = write_connection(
        tmp_path / "syncs", "hr", store_slug(store, account), "HR_DB_URL", direction="two_way", conflict="manual"
    )
    conn = load_connection(path)
    first = run_sync(store, conn)
    assert first.counts["created"] == 10
    assert first.details["out"]["written"] == 0  # what it wrote itself is not sent back

    _edit_in_store(store, account, "A000003", "review")
    source.edit(["A000004"], at=BASE + timedelta(days=30), stage="offer")
    second = run_sync(store, conn)
    assert second.counts["updated"] == 1 and _store_stage(store, account, "A000004") == "offer"
    assert second.details["out"]["written"] == 1 and _source_stage(source, "A000003") == "review"

    # the row it wrote out comes back with a new updated_at: equal values, nothing written, no conflict
    third = run_sync(store, conn)
    assert third.counts["records_read"] == 1 and third.counts["updated"] == 0 and third.counts["conflicts"] == 0
    assert third.details["out"]["written"] == 0

    # both sides edit one record: manual holds it on both sides until someone resolves it
    _edit_in_store(store, account, "A000005", "interview")
    source.edit(["A000005"], at=BASE + timedelta(days=400), stage="offer")
    fourth = run_sync(store, conn)
    assert fourth.counts["conflicts"] == 1 and fourth.details["out"]["written"] == 0
    assert _store_stage(store, account, "A000005") == "interview" and _source_stage(source, "A000005") == "offer"
    with store.engine.connect() as c:
        assert [q["key"] for q in sync_runs.conflicts(c, account, "hr")] == ["A000005"]


def test_a_sync_out_writes_store_changes_to_the_source(store, account, pg_source, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HR_DB_URL", pg_source.url)
    pg_source.add(5)
    slug = store_slug(store, account)
    run_sync(store, load_connection(write_connection(tmp_path / "in", "hr_in", slug, "HR_DB_URL")))
    out = load_connection(write_connection(tmp_path / "out", "hr_out", slug, "HR_DB_URL", direction="out"))
    _edit_in_store(store, account, "A000002", "hired")
    with pg_source.engine.begin() as c:
        c.execute(hr_applications.delete())
    result = run_sync(store, out)
    # every record another change set wrote (the hr_in sync's, the edit) goes out
    assert result.details["out"] == {**result.details["out"], "written": 5, "inserted": 5}
    assert _source_stage(pg_source, "A000002") == "hired"
    again = run_sync(store, out)
    assert again.details["out"]["written"] == 0
