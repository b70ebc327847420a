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

# real databases, Dagster runs and local servers: each test takes seconds
pytestmark = pytest.mark.slow

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


def test_equal_cursor_values_across_a_batch_boundary_lose_no_row(
    store, account, pg_source, tmp_path, monkeypatch
) -> None:
    # 130 rows with one timestamp: batches of 50 end inside the run of equal values
    pg_source.add(130, at=BASE)
    conn = _connection(tmp_path, monkeypatch, store, account, pg_source)
    first = run_sync(store, conn)
    assert first.counts["created"] == 130
    assert (first.cursor["value"], first.cursor["key"]) == (BASE.isoformat(), "A000130")
    # rows added later with the same timestamp and keys after and before the cursor's key
    pg_source.add(20, start=131, at=BASE)
    second = run_sync(store, conn)
    assert second.counts["created"] == 20
    assert len(_apps(store, account)) == 150


def test_a_run_killed_mid_sync_resumes_after_its_last_committed_batch(
    store, account, pg_source, tmp_path, monkeypatch
) -> None:
    pg_source.add(200)
    conn = _connection(tmp_path, monkeypatch, store, account, pg_source)
    batches = []

    def kill_after_two(counts: dict) -> None:
        batches.append(counts)
        if len(batches) == 2:
            raise KeyboardInterrupt  # what a terminated run worker sees

    with pytest.raises(KeyboardInterrupt):
        run_sync(store, conn, on_batch=kill_after_two)
    assert len(_apps(store, account)) == 100
    resumed = run_sync(store, conn)
    assert resumed.resumed and resumed.run_id is not None
    assert resumed.counts["created"] == 200 and resumed.counts["records_read"] == 200
    assert len(_apps(store, account)) == 200


@pytest.mark.parametrize(
    ("strategy", "stage", "conflicts_queued"),
    [
        ("source_wins", "offer", 0),
        ("target_wins", "review", 0),
        ("newest_wins", "offer", 0),
        ("merge_non_empty", "review", 0),
        ("manual", "review", 1),
    ],
)
def test_a_record_edited_on_both_sides_follows_the_conflict_strategy(
    store, account, pg_source, tmp_path, monkeypatch, strategy, stage, conflicts_queued
) -> None:
    from connectors.store import changes
    from connectors.store import syncs as sync_runs

    pg_source.add(10)
    conn = _connection(tmp_path, monkeypatch, store, account, pg_source, conflict=strategy)
    run_sync(store, conn)
    record = _apps(store, account)["A000003"]
    # the store side: an edit by another change set (as a bulk job or an import would)
    with store.begin() as c:
        cs = changes.open_change_set(c, account_id=account, kind="document_import", actor="recruiter")
        c.execute(apps.update().where(apps.c.id == record.id).values(stage="review"))
        changes.write_audit_rows(
            c, cs, "edit", [("applications", record.id, {"stage": "applied"}, {"stage": "review"})], now=BASE
        )
    # the source side, later than the store's edit for newest_wins
    pg_source.edit(["A000003", "A000004"], at=BASE + timedelta(days=3650), stage="offer")
    result = run_sync(store, conn)
    assert result.counts["conflicts"] == 1
    records = _apps(store, account)
    assert records["A000003"].stage == stage
    assert records["A000004"].stage == "offer"  # changed on one side only: no conflict
    with store.engine.connect() as c:
        queued = sync_runs.conflicts(c, account, "hr")
    assert len(queued) == conflicts_queued
    if conflicts_queued:
        assert queued[0]["source_values"]["stage"] == "offer" and queued[0]["target_values"]["stage"] == "review"


@pytest.mark.parametrize(
    ("mode", "left", "deleted_at_set"), [("ignore", 10, 0), ("soft_delete", 10, 2), ("mirror", 8, 0)]
)
def test_rows_deleted_in_the_source_follow_the_delete_mode(
    store, account, pg_source, tmp_path, monkeypatch, mode, left, deleted_at_set
) -> None:
    pg_source.add(10)
    conn = _connection(tmp_path, monkeypatch, store, account, pg_source, delete=mode)
    run_sync(store, conn)
    pg_source.delete(["A000001", "A000002"])
    result = run_sync(store, conn)
    records = _apps(store, account)
    assert len(records) == left
    assert sum(1 for r in records.values() if r.deleted_at is not None) == deleted_at_set
    assert result.counts["deleted"] == (0 if mode == "ignore" else 2)
    if mode != "ignore":
        # the run is a change set: its rollback brings them back (mirror: inserted again from the audit images)
        rollback_sync(store, account, result.run_id, actor="tester")
        records = _apps(store, account)
        assert len(records) == 10
        assert all(r.deleted_at is None for r in records.values())


def test_a_mirror_delete_rolls_back_with_the_records_parts_and_tags(
    store, account, pg_source, tmp_path, monkeypatch
) -> None:
    tags, forms = schema.tags, schema.form_submissions
    pg_source.add(4)
    conn = _connection(tmp_path, monkeypatch, store, account, pg_source, delete="mirror")
    run_sync(store, conn)
    before = _apps(store, account)
    gone = before["A000001"]
    with store.begin() as c:
        c.execute(
            tags.insert(),
            [
                {"account_id": account, "entity_type": "applications", "entity_id": gone.id, "tag": t}
                for t in ("vip", "x")
            ],
        )
        n_forms = c.scalar(sa.select(sa.func.count()).select_from(forms).where(forms.c.application_id == gone.id))
    assert n_forms, "a synced application has its form submission"

    pg_source.delete(["A000001", "A000002"])
    deleting = run_sync(store, conn)
    assert deleting.counts["deleted"] == 2 and set(_apps(store, account)) == {"A000003", "A000004"}
    # the source brings A000002 back before the rollback: a new record holds its key now
    pg_source.add(1, start=2, at=BASE + timedelta(days=5))
    run_sync(store, conn)

    undone = rollback_sync(store, account, deleting.run_id, actor="tester")

    assert undone["restored"]["applications"] == 1 and undone["conflicts"]["applications"] == 1
    after = _apps(store, account)
    assert set(after) == {"A000001", "A000002", "A000003", "A000004"}
    back = after["A000001"]
    assert (back.id, back.stage, back.candidate_id, back.job_id) == (
        gone.id,
        gone.stage,
        gone.candidate_id,
        gone.job_id,
    )
    # SQLite restores timestamps from images to the millisecond (the dialect's image_value)
    assert abs(back.created_at - gone.created_at) < timedelta(milliseconds=1)
    assert after["A000002"].id != before["A000002"].id  # the new record stays; the old one is not doubled
    with store.engine.connect() as c:
        assert sorted(c.scalars(sa.select(tags.c.tag).where(tags.c.entity_id == gone.id))) == ["vip", "x"]
        assert (
            c.scalar(sa.select(sa.func.count()).select_from(forms).where(forms.c.application_id == gone.id)) == n_forms
        )


def test_a_folder_of_files_syncs_the_files_written_since_the_last_run(store, account, tmp_path, monkeypatch) -> None:
    import os

    import pyarrow as pa
    import pyarrow.parquet as pq
    import yaml

    drop = tmp_path / "exports"
    drop.mkdir()
    (drop / "a.csv").write_text(
        "id,email,stage\nF1,f1@example.com,applied\nF2,f2@example.com,review\n", encoding="utf-8"
    )
    os.utime(drop / "a.csv", (1_700_000_000, 1_700_000_000))
    spec = {
        "account": store_slug(store, account),
        "entity": "applications",
        "source": {"type": "files", "path": str(drop), "key": "id"},
        "mapping": {"columns": {"id": "external_id", "email": "email", "stage": "stage"}},
        "batch_size": 1,
    }
    (tmp_path / "files.yaml").write_text(yaml.safe_dump(spec), encoding="utf-8")
    conn = load_connection(tmp_path / "files.yaml")
    assert run_sync(store, conn).counts["created"] == 2
    table = pa.table({"id": ["F2", "F3"], "email": ["f2@example.com", "f3@example.com"], "stage": ["offer", "applied"]})
    pq.write_table(table, drop / "b.parquet")
    second = run_sync(store, conn)
    assert (second.counts["records_read"], second.counts["created"], second.counts["updated"]) == (2, 1, 1)
    assert _apps(store, account)["F2"].stage == "offer"
    assert run_sync(store, conn).counts["records_read"] == 0


def test_a_field_can_have_its_own_conflict_strategy(store, account, pg_source, tmp_path, monkeypatch) -> None:
    from connectors.store import changes

    pg_source.add(4)
    strategy = {"default": "source_wins", "fields": {"stage": "target_wins"}}
    conn = _connection(tmp_path, monkeypatch, store, account, pg_source, conflict=strategy)
    assert conn.field_conflicts == {"stage": "target_wins"}
    run_sync(store, conn)
    record = _apps(store, account)["A000002"]
    with store.begin() as c:
        cs = changes.open_change_set(c, account_id=account, kind="document_import", actor="recruiter")
        c.execute(apps.update().where(apps.c.id == record.id).values(stage="review", source="referral"))
        changes.write_audit_rows(
            c, cs, "edit", [("applications", record.id, {"stage": "applied"}, {"stage": "review"})], now=BASE
        )
    pg_source.edit(["A000002"], at=BASE + timedelta(days=30), stage="offer", job_code="ENG-9")
    assert run_sync(store, conn).counts["conflicts"] == 1
    record = _apps(store, account)["A000002"]
    assert record.stage == "review"  # the field's own strategy: the record keeps it
    with store.engine.connect() as c:
        code = c.scalar(sa.select(schema.jobs.c.code).where(schema.jobs.c.id == record.job_id))
    assert code == "ENG-9"  # the rest: source wins


def test_a_crashed_runs_row_is_ended_by_the_failure_sensor_and_resumed(
    store, account, pg_source, tmp_path, monkeypatch
) -> None:
    from connectors.store import syncs as sync_runs
    from pipelines.syncs.engine import end_run

    pg_source.add(5)
    conn = _connection(tmp_path, monkeypatch, store, account, pg_source)
    # a run worker killed before its first batch: its row stays processing
    with store.begin() as c:
        crashed, _, _ = sync_runs.begin(c, account, "hr", full_refresh=False, direction="in", dagster_run_id="run-1")
    assert end_run(store, "run-1", "failed", "Dagster run run-1 failed: worker gone") == 1
    with store.engine.connect() as c:
        assert sync_runs.row(c, crashed).status == "failed"
    resumed = run_sync(store, conn)
    assert resumed.run_id == crashed and resumed.resumed and resumed.counts["created"] == 5


def test_a_run_stopped_between_batches_ends_cancelled_and_the_next_resumes(
    store, account, pg_source, tmp_path, monkeypatch
) -> None:
    from pipelines.syncs.engine import SyncStopped

    pg_source.add(120)
    conn = _connection(tmp_path, monkeypatch, store, account, pg_source)
    asked = []

    def stop_at_third() -> bool:
        asked.append(1)
        return len(asked) == 3

    with pytest.raises(SyncStopped) as stopped:
        run_sync(store, conn, should_stop=stop_at_third)
    with store.engine.connect() as c:
        row = c.execute(sa.select(schema.sync_runs).where(schema.sync_runs.c.id == stopped.value.run_id)).one()
    assert (row.status, row.created) == ("cancelled", 100)
    assert run_sync(store, conn).counts["created"] == 120
