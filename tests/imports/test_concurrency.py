"""Two imports into one account at the same time (the production queue runs two imports at once)."""

from __future__ import annotations

import sqlite3
import threading
import time
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from connectors.store import RecordStore, imports
from pipelines.imports.engine import ImportOptions, run_import
from tests.imports.helpers import apps_csv, count


def _files(tmp_path: Path, n: int) -> tuple[Path, Path]:
    # the same candidates and jobs, different application ids: the second file's rows match the
    # first one's applications by email and job
    return tuple(
        apps_csv(
            tmp_path,
            [f"{k}-{i},F{i},L{i},p{i}@example.com,JOB-{i % 5},Applied,2026-01-02,{i % 9}" for i in range(n)],
            name=f"{k}.csv",
        )
        for k in ("A", "B")
    )


def _run_both(store: RecordStore, account: uuid.UUID, files: tuple[Path, Path], tmp_path: Path) -> dict:
    results: dict[str, object] = {}

    def go(path: Path) -> None:
        try:
            results[path.stem] = run_import(
                store, account, path, ImportOptions(batch_size=100), failed_rows_dir=tmp_path
            )
        except Exception as exc:
            results[path.stem] = exc

    threads = [threading.Thread(target=go, args=(p,)) for p in files]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    return results


@pytest.mark.postgres
def test_concurrent_imports_into_one_account_wait_for_each_others_batches(pg_url, tmp_path, monkeypatch) -> None:
    store = RecordStore(pg_url)
    account = store.ensure_account(f"conc-{uuid.uuid4().hex[:8]}")
    create = imports.ImportWriter._create
    first: list[threading.Thread] = []
    guard = threading.Lock()

    def held_create(self, r):  # type: ignore[no-untyped-def]
        with guard:
            mine = not first
            if mine:
                first.append(threading.current_thread())
        if mine:
            # the first batch here has written its jobs and candidates, uncommitted: it goes on
            # only once the other import's batch is waiting on it (for the account's batch lock;
            # before, on the unique key of the same job, then failing when this one commits)
            deadline = time.monotonic() + 60
            with store.engine.connect() as c:
                while not c.execute(
                    sa.text(
                        "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
                        "WHERE NOT l.granted AND a.datname = current_database()"
                    )
                ).scalar():
                    assert time.monotonic() < deadline, "the other import never waited for this batch"
                    time.sleep(0.02)
        return create(self, r)

    monkeypatch.setattr(imports.ImportWriter, "_create", held_create)
    results = _run_both(store, account, _files(tmp_path, 300), tmp_path)

    assert all(not isinstance(r, Exception) for r in results.values()), results
    assert [r.status for r in results.values()] == ["completed", "completed"]
    # every application once: what one import created, the other matched (with the same values: unchanged)
    assert sum(r.created for r in results.values()) == 300
    assert sum(r.details["unchanged"] for r in results.values()) == 300
    assert (count(store, "applications", account), count(store, "users", account), count(store, "jobs", account)) == (
        300,
        300,
        5,
    )
    store.dispose()


def test_concurrent_imports_on_sqlite_neither_fail_nor_duplicate(sqlite_url, tmp_path) -> None:
    store = RecordStore(sqlite_url)
    account = store.ensure_account(f"conc-{uuid.uuid4().hex[:8]}")
    results = _run_both(store, account, _files(tmp_path, 2000), tmp_path)
    assert all(not isinstance(r, Exception) for r in results.values()), results
    assert sum(r.created for r in results.values()) == 2000
    assert (count(store, "applications", account), count(store, "users", account), count(store, "jobs", account)) == (
        2000,
        2000,
        5,
    )
    store.dispose()


def test_sqlite_batches_hold_the_write_lock_from_their_first_statement(sqlite_url) -> None:
    # begun deferred, a batch that read before another writer committed could not write any
    # more; immediate, its first statement (even on its own temp table) takes the write lock
    store = RecordStore(sqlite_url)
    database = sa.make_url(sqlite_url).database
    with store.engine.connect() as conn, imports.serialized_batches(conn), conn.begin():
        conn.exec_driver_sql("CREATE TEMP TABLE IF NOT EXISTS batch_probe (x int)")
        conn.exec_driver_sql("INSERT INTO batch_probe VALUES (1)")
        other = sqlite3.connect(database, timeout=0)
        try:
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                other.execute("INSERT INTO accounts (id, slug, name) VALUES ('x', 'x', 'x')")
        finally:
            other.close()
    # and the connection goes back to the pool as it came
    with store.engine.connect() as conn:
        assert conn.connection.dbapi_connection.isolation_level == ""
    store.dispose()
