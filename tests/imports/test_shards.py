"""Sharded imports (`shards` option): the same records, counts, audit and failed rows as one shard; resume and rollback."""

from __future__ import annotations

import csv
import multiprocessing
import os
import signal
import threading
import uuid
import zlib

import pyarrow as pa
import pytest
import sqlalchemy as sa

from connectors.store import schema
from pipelines.imports import shards
from pipelines.imports.engine import ImportFailed, ImportOptions, list_imports, rollback_import, run_import
from tests import faults
from tests.imports.helpers import apps_csv, count, file_materializations

OUTCOME = ("rows_read", "created", "updated", "skipped", "flagged", "errors", "status")


def mixed_rows(n: int = 160) -> list[str]:
    """Applications whose candidates repeat (spelled with other case and spaces), updates, bad emails, a few jobs."""
    lines = []
    for i in range(n):
        who = i % 130 % 45  # an application keeps its candidate (see the docs: shards split by candidate)
        email = f"Person{who}@Example.org" if i % 3 else f"  person{who}@example.ORG "
        app = f"A-{i % 130}"  # rows 130+ update applications of earlier rows
        stage = "Interview" if i >= 130 else "Applied"
        lines.append(f"{app},F{who},L{who},{email},J-{i % 7},{stage},2026-01-{1 + i % 28:02d},{i % 9}")
    lines[17] = "A-17,F,L,not-an-email,J-1,Applied,2026-01-01,1"
    lines[88] = "A-88,F,L,p88@x.org,J-1,Applied,not-a-date,1"
    return lines


def audit_counts(store, import_id: uuid.UUID) -> dict[tuple[str, str], int]:
    log = schema.audit_log
    query = (
        sa.select(log.c.operation, log.c.entity_type, sa.func.count())
        .where(log.c.change_set_id == import_id)
        .group_by(log.c.operation, log.c.entity_type)
    )
    with store.engine.connect() as c:
        return {(op, entity): n for op, entity, n in c.execute(query)}


def records(store, account: uuid.UUID) -> dict[str, list]:
    a, u, j = schema.applications, schema.users, schema.jobs
    with store.engine.connect() as c:
        apps = c.execute(
            sa.select(a.c.external_id, a.c.stage, u.c.email_normalized, j.c.code)
            .join(u, u.c.id == a.c.candidate_id)
            .join(j, j.c.id == a.c.job_id)
            .where(a.c.account_id == account)
            .order_by(a.c.external_id)
        ).all()
        users = c.execute(sa.select(u.c.email_normalized).where(u.c.account_id == account).order_by(u.c.email)).all()
        jobs = c.execute(sa.select(j.c.code).where(j.c.account_id == account).order_by(j.c.code)).all()
    return {
        "applications": [tuple(r) for r in apps],
        "users": [tuple(r) for r in users],
        "jobs": [tuple(r) for r in jobs],
    }


def failed_rows(path: str | None) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("count_", [2, 3])
def test_shards_write_what_one_shard_writes(store, tmp_path, count_) -> None:
    path = apps_csv(tmp_path, mixed_rows())
    one, many = (store.ensure_account(f"t-{uuid.uuid4().hex[:10]}") for _ in range(2))
    a = run_import(store, one, path, ImportOptions(batch_size=10), failed_rows_dir=tmp_path / "one")
    b = run_import(store, many, path, ImportOptions(batch_size=10, shards=count_), failed_rows_dir=tmp_path / "many")
    assert [getattr(b, k) for k in OUTCOME] == [getattr(a, k) for k in OUTCOME]
    assert (a.status, a.rows_read, a.errors) == ("completed", 160, 2)
    assert records(store, many) == records(store, one)
    assert audit_counts(store, b.import_id) == audit_counts(store, a.import_id)
    assert failed_rows(b.failed_rows_path) == failed_rows(a.failed_rows_path)
    assert [r["_row"] for r in failed_rows(b.failed_rows_path)] == ["18", "89"]
    (row,) = list_imports(store, many)
    assert row["status"] == "completed" and row["id"] == b.import_id
    details = dict(b.details)
    assert details["shards"]["count"] == count_
    assert set(details["shards"]["committed"].values()) == {160}
    assert details["candidates_created"] == dict(a.details)["candidates_created"] == 45
    assert not list((tmp_path / "many").glob(".*part"))


def test_rows_of_one_candidate_meet_in_one_shard() -> None:
    emails = pa.array(["ann@x.org", "ann@x.org", "bob@x.org", None, None])
    table = pa.table({"email_norm": emails})
    rows = pa.array([1, 2, 3, 4, 5], pa.int64())
    for n in (2, 3, 5):
        of = shards.shard_numbers(table, rows, n, case_sensitive=False)
        assert of[0] == of[1] and of[3:] == [4 % n, 5 % n]
    codes = pa.table({"code": pa.array(["ENG-1", "eng-1"])})
    assert len(set(shards.shard_numbers(codes, pa.array([1, 2]), 7, case_sensitive=False))) == 1


@pytest.mark.parametrize("how", ["stopped", "interrupted"])
def test_a_sharded_import_stopped_mid_way_resumes_each_shard_exactly(store, account, tmp_path, how) -> None:
    path = apps_csv(tmp_path, mixed_rows())
    seen: list[int] = []

    def progress(p) -> None:
        seen.append(p.batches_committed)
        if how == "interrupted" and len(seen) == 5:
            raise KeyboardInterrupt("killed")

    options = ImportOptions(batch_size=10, shards=2)
    stop = (lambda: len(seen) >= 5) if how == "stopped" else None
    if how == "interrupted":
        with pytest.raises(KeyboardInterrupt):
            run_import(store, account, path, options, failed_rows_dir=tmp_path, on_progress=progress)
    else:
        r = run_import(store, account, path, options, failed_rows_dir=tmp_path, on_progress=progress, should_stop=stop)
        assert r.status == "cancelled"
    (row,) = list_imports(store, account)
    assert row["status"] == "cancelled" and 0 < row["rows_read"] < 160
    # the re-run keeps the shards the import started with
    r = run_import(store, account, path, ImportOptions(batch_size=10, shards=1), failed_rows_dir=tmp_path)
    assert len(list_imports(store, account)) == 1
    reference = store.ensure_account(f"t-{uuid.uuid4().hex[:10]}")
    ref = run_import(store, reference, path, ImportOptions(batch_size=10), failed_rows_dir=tmp_path / "ref")
    assert [getattr(r, k) for k in OUTCOME] == [getattr(ref, k) for k in OUTCOME]
    assert records(store, account) == records(store, reference)
    assert audit_counts(store, r.import_id) == audit_counts(store, ref.import_id)
    assert [x["_row"] for x in failed_rows(r.failed_rows_path)] == ["18", "89"]


def test_rollback_of_a_sharded_import_restores_everything(store, account, tmp_path) -> None:
    first = apps_csv(tmp_path, ["A-1,Ann,One,ann@x.org,J-1,Applied,2026-01-01,1"], "first.csv")
    run_import(store, account, first, ImportOptions(), failed_rows_dir=tmp_path)
    before = records(store, account)
    path = apps_csv(tmp_path, ["A-1,Ann,One,ann@x.org,J-1,Offer,2026-01-01,1", *mixed_rows()[1:]])
    r = run_import(store, account, path, ImportOptions(batch_size=10, shards=2), failed_rows_dir=tmp_path)
    assert r.updated >= 1 and r.created > 100
    out = rollback_import(store, account, r.import_id, actor="tester")
    assert out["restored"]["applications"] == 1
    assert records(store, account) == before
    assert count(store, "form_submissions", account) == 1


@pytest.mark.postgres
def test_a_killed_shard_process_fails_the_import_and_a_rerun_resumes_exactly(pg_url, tmp_path) -> None:
    acct = faults.new_account(pg_url)
    path = faults.applicants_csv(tmp_path / "apps.csv", 400, late_from=201)
    options = ImportOptions(batch_size=20, shards=2)
    outcome: dict = {}

    def go() -> None:
        try:
            outcome["result"] = run_import(acct.store, acct.id, path, options, failed_rows_dir=tmp_path)
        except BaseException as exc:
            outcome["error"] = exc

    with faults.job_row_locked(acct) as lock:
        worker = threading.Thread(target=go)
        worker.start()
        # both shards wait inside their batch holding the late job's rows
        faults.wait_for(lambda: len(lock.waiters()) == 2, "both shards at the held job", worker.is_alive)
        victim = next(p for p in multiprocessing.active_children() if p.name == "import-shard-1")
        os.kill(victim.pid, signal.SIGKILL)
        faults.wait_for(lambda: not victim.is_alive(), "the killed shard to end")
    worker.join(faults.WAIT_S)
    assert "shard 2 of 2 failed" in str(outcome["error"])
    (row,) = faults.history(acct)
    assert row.status == "failed" and 0 < row.created < 400
    assert faults.records(acct, row.id) == faults.exactly(row.created)
    r = run_import(acct.store, acct.id, path, options, failed_rows_dir=tmp_path)
    (row,) = faults.history(acct)
    assert faults.completed(row) == (400, 400, 400, 0, 0)
    assert faults.records(acct, r.import_id) == faults.exactly(400)
    acct.store.dispose()


def test_imported_file_writes_a_sharded_import_as_one_materialization(store, store_url, tmp_path, instance) -> None:
    from tests.imports import test_assets as assets

    slug = f"t-{uuid.uuid4().hex[:10]}"
    store.ensure_account(slug)
    path = apps_csv(tmp_path, mixed_rows())
    result = assets.materialize(instance, store_url, path, account=slug, shards=2, batch_size=20)
    assert result.success
    [row] = assets.history(store, result.run_id)
    assert (row["status"], row["rows_read"], row["errors"]) == ("completed", 160, 2)
    assert row["details"]["shards"]["count"] == 2
    [mat] = file_materializations(result)
    assert mat.metadata["created"].value == row["created"] == assets.count(store, schema.applications, slug)
    progress = [e for e in result.all_events if e.event_type_value == "ASSET_OBSERVATION"]
    assert progress and progress[-1].asset_observation_data.asset_observation.metadata["rows_read"].value == 160


def shard_lock_waiters(acct) -> int:
    """Backends waiting for a shard's lock (`pg_advisory_lock`) in the account's database."""
    query = sa.text(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event = 'advisory' "
        "AND query LIKE '%pg_advisory_lock(%'"
    )
    with acct.store.engine.connect() as c:
        return c.execute(query).scalar()


def _import_in_a_process(url: str, account: uuid.UUID, path: str, failed_dir: str) -> None:
    from connectors.store import RecordStore

    run_import(RecordStore(url), account, path, ImportOptions(batch_size=20, shards=2), failed_rows_dir=failed_dir)


@pytest.mark.postgres
def test_shards_left_running_by_a_killed_import_stop_and_a_rerun_waits_for_them(pg_url, tmp_path) -> None:
    acct = faults.new_account(pg_url)
    path = faults.applicants_csv(tmp_path / "apps.csv", 400, late_from=201)
    ctx = multiprocessing.get_context("spawn")
    parent = ctx.Process(target=_import_in_a_process, args=(pg_url, acct.id, str(path), str(tmp_path)))
    with faults.job_row_locked(acct) as lock:
        parent.start()
        faults.wait_for(lambda: len(lock.waiters()) == 2, "both shards at the held job", parent.is_alive)
        os.kill(parent.pid, signal.SIGKILL)  # its shard processes are left running, inside their batch
        parent.join()
        outcome: dict = {}

        def rerun() -> None:
            outcome["result"] = run_import(
                acct.store, acct.id, path, ImportOptions(batch_size=20, shards=2), failed_rows_dir=tmp_path
            )

        again = threading.Thread(target=rerun)
        again.start()
        # the re-run's shards wait for the ones left running (each shard's lock) before reading their position
        faults.wait_for(lambda: shard_lock_waiters(acct) == 2, "the re-run's shards to wait for the ones left running")
    again.join(faults.WAIT_S)
    r = outcome["result"]
    assert (r.status, r.rows_read, r.created, r.errors) == ("completed", 400, 400, 0)
    assert faults.records(acct, r.import_id) == faults.exactly(400)
    acct.store.dispose()


def test_error_policy_abort_fails_a_sharded_import_at_its_first_bad_row(store, account, tmp_path) -> None:
    path = apps_csv(tmp_path, mixed_rows())
    with pytest.raises(ImportFailed, match=r"row 18, column 'email'.*error_policy abort") as failed:
        run_import(
            store, account, path, ImportOptions(batch_size=10, shards=2, error_policy="abort"), failed_rows_dir=tmp_path
        )
    (row,) = list_imports(store, account)
    assert row["status"] == "failed" and row["rows_read"] < 160
    assert "18" in [r["_row"] for r in failed_rows(row["failed_rows_path"])]
    assert failed.value.import_id == row["id"]


def _email_of_shard(shard: int) -> str:
    """An email the shards' hash gives to SHARD of two."""
    n = 0
    while zlib.crc32(f"s{n}@x.org".encode()) % 2 != shard:
        n += 1
    return f"s{n}@x.org"


def test_abort_names_the_files_first_bad_row_whichever_shard_meets_a_bad_row_first(store, account, tmp_path) -> None:
    # row 45 belongs to shard 1 of 2, written first on SQLite; row 12 to shard 2, which writes its
    # batches up to row 45 and meets row 12 on the way (on PostgreSQL both shards run at once)
    lines = [f"A-{i},F,L,e{i}@x.org,J-1,Applied,2026-01-01,1" for i in range(60)]
    lines[11] = f"A-11,F,L,{_email_of_shard(1)},J-1,Applied,not-a-date,1"
    lines[44] = f"A-44,F,L,{_email_of_shard(0)},J-1,Applied,2026-13-45,1"
    path = apps_csv(tmp_path, lines)
    with pytest.raises(ImportFailed, match=r"row 12, column 'Applied At'.*error_policy abort") as failed:
        run_import(
            store, account, path, ImportOptions(batch_size=10, shards=2, error_policy="abort"), failed_rows_dir=tmp_path
        )
    (row,) = list_imports(store, account)
    assert (row["status"], row["error_message"]) == ("failed", failed.value.message)
    assert "12" in [r["_row"] for r in failed_rows(row["failed_rows_path"])]
