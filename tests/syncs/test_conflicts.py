"""Conflict strategies per field, empty source values that clear a field, and resolutions that stay resolved."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
import sqlalchemy as sa

from connectors.store import RecordStore, changes, schema
from connectors.store import syncs as sync_runs
from pipelines.syncs.config import load_connection
from pipelines.syncs.engine import resolve_conflict, rollback_sync, run_sync
from tests.syncs.conftest import BASE, Source, hr_applications, write_connection
from tests.syncs.test_sql_sync import store_slug

# real databases: each test takes seconds
pytestmark = pytest.mark.slow

apps = schema.applications
LATER = BASE + timedelta(days=3650)  # after any write of the store: the source is newer
EARLIER = BASE + timedelta(days=1)  # after the source's first rows, before any write of the store


def _connection(tmp_path, monkeypatch, store, account, source: Source, **overrides):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("HR_DB_URL", source.url)
    return load_connection(
        write_connection(tmp_path / "syncs", "hr", store_slug(store, account), "HR_DB_URL", **overrides)
    )


def _edit_in_store(store: RecordStore, account: uuid.UUID, key: str, **values: str | None) -> None:
    """An edit by another change set, as a bulk job or an import makes one."""
    with store.begin() as c:
        rec = c.execute(sa.select(apps).where(apps.c.account_id == account, apps.c.external_id == key)).one()
        cs = changes.open_change_set(c, account_id=account, kind="document_import", actor="recruiter")
        c.execute(apps.update().where(apps.c.id == rec.id).values(**values))
        before = {k: getattr(rec, k) for k in values}
        changes.write_audit_rows(c, cs, "edit", [("applications", rec.id, before, values)], now=BASE)


def _record(store: RecordStore, account: uuid.UUID, key: str) -> dict:
    j = schema.jobs
    with store.engine.connect() as c:
        q = (
            sa.select(apps.c.stage, apps.c.source, j.c.code.label("job_code"))
            .select_from(apps.outerjoin(j, j.c.id == apps.c.job_id))
            .where(apps.c.account_id == account, apps.c.external_id == key)
        )
        return dict(c.execute(q).one()._mapping)


def _open(store: RecordStore, account: uuid.UUID) -> list[dict]:
    with store.engine.connect() as c:
        return sync_runs.conflicts(c, account, "hr")


@pytest.mark.parametrize(
    ("strategy", "source_at", "stage", "queued"),
    [
        ("source_wins", LATER, "offer", 0),
        ("target_wins", LATER, "review", 0),
        ("newest_wins", LATER, "offer", 0),
        ("newest_wins", EARLIER, "review", 0),
        ("merge_non_empty", LATER, "review", 0),
        ("manual", LATER, "review", 1),
    ],
)
def test_a_field_follows_its_own_strategy_and_the_rest_the_connections(
    store, account, pg_source, tmp_path, monkeypatch, strategy, source_at, stage, queued
) -> None:
    pg_source.add(5)
    conflict = {"default": "source_wins", "fields": {"stage": strategy}}
    conn = _connection(tmp_path, monkeypatch, store, account, pg_source, conflict=conflict)
    assert conn.strategy_of("stage") == strategy and conn.strategy_of("source") == "source_wins"
    run_sync(store, conn)
    _edit_in_store(store, account, "A000002", stage="review", source="referral")
    pg_source.edit(["A000002"], at=source_at, stage="offer", channel="agency", job_code="ENG-9")

    result = run_sync(store, conn)

    assert result.counts["conflicts"] == 1
    # the field decided by its strategy; the others (a field of the record, its job) by the connection's
    assert _record(store, account, "A000002") == {"stage": stage, "source": "agency", "job_code": "ENG-9"}
    assert len(_open(store, account)) == queued


def test_merge_non_empty_per_field_fills_only_what_the_record_has_empty(
    store, account, pg_source, tmp_path, monkeypatch
) -> None:
    pg_source.add(5)
    conflict = {"default": "target_wins", "fields": {"source": "merge_non_empty"}}
    conn = _connection(tmp_path, monkeypatch, store, account, pg_source, conflict=conflict)
    run_sync(store, conn)
    _edit_in_store(store, account, "A000002", stage="review", source=None)
    _edit_in_store(store, account, "A000003", stage="review")
    pg_source.edit(["A000002", "A000003"], at=LATER, stage="offer", channel="agency", job_code="ENG-9")

    assert run_sync(store, conn).counts["conflicts"] == 2

    # empty in the record: the source fills it; the rest stays (target_wins), its job too
    assert _record(store, account, "A000002") == {"stage": "review", "source": "agency", "job_code": "ENG-2"}
    # set in the record: nothing takes the source's value, the record stays as it is
    assert _record(store, account, "A000003") == {"stage": "review", "source": "career site", "job_code": "ENG-0"}


def test_a_field_held_for_a_manual_decision_stays_held_until_resolved(
    store, account, pg_source, tmp_path, monkeypatch
) -> None:
    pg_source.add(5)
    conflict = {"default": "source_wins", "fields": {"stage": "manual"}}
    conn = _connection(tmp_path, monkeypatch, store, account, pg_source, conflict=conflict)
    run_sync(store, conn)
    _edit_in_store(store, account, "A000002", stage="review")
    pg_source.edit(["A000002"], at=LATER, stage="offer", channel="agency")
    run_sync(store, conn)
    assert _record(store, account, "A000002")["stage"] == "review"

    # the source changes again while the conflict is open: the rest follows it, the stage stays held
    pg_source.edit(["A000002"], at=LATER + timedelta(days=1), stage="hired", channel="fair")
    again = run_sync(store, conn)
    assert again.counts["conflicts"] == 1
    assert _record(store, account, "A000002") == {"stage": "review", "source": "fair", "job_code": "ENG-2"}
    [queued] = _open(store, account)
    assert queued["source_values"]["stage"] == "hired"

    # taking the source writes the held field only
    _edit_in_store(store, account, "A000002", source="referral")
    resolve_conflict(store, conn, queued["id"], take="source", actor="tester")
    assert _record(store, account, "A000002") == {"stage": "hired", "source": "referral", "job_code": "ENG-2"}
    assert _open(store, account) == []


def test_an_empty_source_value_clears_the_field_unless_the_strategy_merges(
    store, account, pg_source, tmp_path, monkeypatch
) -> None:
    pg_source.add(5)
    conflict = {"default": "source_wins", "fields": {"stage": "merge_non_empty"}}
    conn = _connection(tmp_path, monkeypatch, store, account, pg_source, conflict=conflict)
    run_sync(store, conn)
    assert _record(store, account, "A000002")["source"] == "career site"
    # changed in the source only: it empties the channel
    pg_source.edit(["A000002"], at=LATER, channel=None)
    cleared = run_sync(store, conn)
    assert (cleared.counts["updated"], cleared.counts["conflicts"]) == (1, 0)
    assert _record(store, account, "A000002")["source"] is None
    # a conflict decided for the source: the source's empty value clears the record's
    _edit_in_store(store, account, "A000003", source="referral", stage="review")
    pg_source.edit(["A000003"], at=LATER, channel=None, stage=None)
    assert run_sync(store, conn).counts["conflicts"] == 1
    # ...but a field whose strategy merges non-empty values keeps the record's
    assert _record(store, account, "A000003") == {"stage": "review", "source": None, "job_code": "ENG-0"}

    merging = _connection(tmp_path, monkeypatch, store, account, pg_source, conflict="merge_non_empty")
    pg_source.edit(["A000004"], at=LATER, channel=None)
    assert run_sync(store, merging).counts["updated"] == 0
    assert _record(store, account, "A000004")["source"] == "career site"


def test_an_empty_source_value_clears_through_a_rollback_too(store, account, pg_source, tmp_path, monkeypatch) -> None:
    pg_source.add(3)
    conn = _connection(tmp_path, monkeypatch, store, account, pg_source)
    run_sync(store, conn)
    pg_source.edit(["A000001"], at=LATER, channel=None)
    cleared = run_sync(store, conn)
    assert _record(store, account, "A000001")["source"] is None
    rollback_sync(store, account, cleared.run_id, actor="tester")
    assert _record(store, account, "A000001")["source"] == "career site"


def test_keeping_the_record_resets_the_baseline_so_the_conflict_does_not_come_back(
    store, account, pg_source, tmp_path, monkeypatch
) -> None:
    pg_source.add(5)
    conn = _connection(tmp_path, monkeypatch, store, account, pg_source, conflict="manual", direction="two_way")
    run_sync(store, conn)
    _edit_in_store(store, account, "A000002", stage="review")
    pg_source.edit(["A000002"], at=LATER, stage="offer")
    assert run_sync(store, conn).counts["conflicts"] == 1
    [queued] = _open(store, account)

    done = resolve_conflict(store, conn, queued["id"], take="target", actor="tester")

    assert done["sync_run_id"] is not None
    assert _open(store, account) == []
    # the next run sends the record's values to the source (two-way): the record won
    sent = run_sync(store, conn)
    assert sent.counts["conflicts"] == 0 and sent.details["out"]["written"] == 1
    with pg_source.engine.connect() as c:
        assert c.scalar(sa.select(hr_applications.c.stage).where(hr_applications.c.id == "A000002")) == "review"
    # the source changes the record again: changed on one side only since the resolution, no conflict
    pg_source.edit(["A000002"], at=LATER + timedelta(days=9), stage="hired")
    after = run_sync(store, conn)
    assert after.counts["conflicts"] == 0 and _open(store, account) == []
    assert _record(store, account, "A000002")["stage"] == "hired"


def test_taking_the_source_resets_the_baseline_even_when_nothing_changes(
    store, account, pg_source, tmp_path, monkeypatch
) -> None:
    pg_source.add(5)
    conn = _connection(tmp_path, monkeypatch, store, account, pg_source, conflict="manual")
    run_sync(store, conn)
    _edit_in_store(store, account, "A000002", stage="review")
    pg_source.edit(["A000002"], at=LATER, stage="review", channel="agency")
    run_sync(store, conn)
    [queued] = _open(store, account)
    # someone already gave the record the source's values: taking the source writes nothing
    _edit_in_store(store, account, "A000002", source="agency")
    resolved = resolve_conflict(store, conn, queued["id"], take="source", actor="tester")
    with store.engine.connect() as c:
        assert sync_runs.row(c, resolved["sync_run_id"]).unchanged == 1
    assert _record(store, account, "A000002")["source"] == "agency"
    pg_source.edit(["A000002"], at=LATER + timedelta(days=9), stage="offer")
    assert run_sync(store, conn).counts["conflicts"] == 0
    assert _record(store, account, "A000002")["stage"] == "offer"
    # the resolution's own run rolls back like any run
    undone = rollback_sync(store, account, resolved["sync_run_id"], actor="tester", force=True)
    assert undone["status"] == "rolled_back"
