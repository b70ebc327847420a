"""Faults an import must survive on PostgreSQL, injected from outside the run: Terminate mid-file,
kill -9 of the run worker, a database connection killed under it.

Each test stops the import at a known batch without timing assumptions: rows from a given point
on name a job whose row another connection holds `FOR UPDATE`, so the import commits the batches
before it and then waits inside the next one (its foreign-key check needs that row) until the
test acts (tests/faults.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from pipelines import runs
from pipelines.imports import dropzone
from pipelines.imports.assets import ImportConfig, _build_imported_file, import_files
from pipelines.imports.launch import launch_import, start_import
from resources import RecordStoreResource
from tests.faults import (
    BATCH,
    WAIT_S,
    Account,
    applicants_csv,
    completed,
    event_types,
    exactly,
    history,
    job_row_locked,
    kill_run,
    new_account,
    process_gone,
    records,
    rerun_after_kill,
    wait_for,
)

pytestmark = pytest.mark.postgres

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def acct(pg_url: str) -> Iterator[Account]:
    account = new_account(pg_url)
    yield account
    account.store.dispose()


def _options() -> ImportConfig:
    return ImportConfig(batch_size=BATCH)


def test_a_terminated_import_run_keeps_whole_batches_and_a_rerun_finishes_the_file(
    pg_url: str, instance: dg.DagsterInstance, acct: Account, tmp_path: Path
) -> None:
    rows = 1000
    path = applicants_csv(tmp_path / "applicants.csv", rows, late_from=2 * BATCH + 1)

    with job_row_locked(acct) as lock:
        run_id = start_import(path, "applications", acct.slug, _options(), instance=instance, database_url=pg_url)
        try:
            # batches 1-2 commit; batch 3 waits on the locked job
            wait_for(lock.waiters, "the import to wait on the locked job")
            [before] = history(acct)
            assert (before.status, before.rows_committed) == ("processing", 2 * BATCH)
            # what Terminate in the UI does, without a webserver: Dagster's run launcher interrupts the worker
            assert runs.terminate_run(run_id, instance=instance)
            wait_for(lambda: history(acct)[0].status == "cancelled", "the import to record its cancellation")
        finally:
            # the interrupted batch may now run on in the server: it must never commit
            lock.release()
    assert runs.wait_for_run(run_id, instance=instance, timeout=WAIT_S) == dg.DagsterRunStatus.CANCELED

    assert "STEP_RESTARTED" not in event_types(instance, run_id)
    [cancelled] = history(acct)
    assert (cancelled.status, cancelled.rows_committed, cancelled.rows_read, cancelled.created, cancelled.errors) == (
        "cancelled",
        2 * BATCH,
        2 * BATCH,
        2 * BATCH,
        0,
    )
    assert cancelled.dagster_run_id == run_id
    assert records(acct, cancelled.id) == exactly(2 * BATCH)

    again, result = launch_import(
        path, "applications", acct.slug, _options(), instance=instance, database_url=pg_url, timeout=WAIT_S
    )

    assert result is not None and result.status == "completed"
    [done] = history(acct)
    assert done.id == cancelled.id, "the re-run resumes the cancelled import"
    assert completed(done) == (rows, rows, rows, 0, 0)
    assert done.dagster_run_id == again
    assert records(acct, done.id) == exactly(rows)


def test_a_killed_database_connection_fails_the_attempt_and_the_retry_resumes(
    pg_url: str, instance: dg.DagsterInstance, acct: Account, tmp_path: Path
) -> None:
    rows = 1000
    path = applicants_csv(tmp_path / "applicants.csv", rows, late_from=2 * BATCH + 1)
    key = dropzone.partition_key("applications", path.name, dropzone.file_sha256(path))
    instance.add_dynamic_partitions(import_files.name, [key])
    # the production classification of faults, with a short delay
    asset = _build_imported_file(dg.RetryPolicy(max_retries=2, delay=0.2))

    with job_row_locked(acct) as lock, ThreadPoolExecutor(1) as pool:

        def kill_then_clear() -> sa.Row:
            try:
                # batches 1-2 commit; batch 3 waits on the locked job: kill that backend
                [waiter] = wait_for(lock.waiters, "the import to wait on the locked job")
                [before] = history(acct)
                assert (before.status, before.rows_committed) == ("processing", 2 * BATCH)
                with acct.store.engine.connect() as c:
                    assert c.execute(sa.text("SELECT pg_terminate_backend(:p)"), {"p": waiter}).scalar()
                [failed] = wait_for(
                    lambda: [r for r in history(acct) if r.status == "failed"], "the attempt to record a failure"
                )
                return failed
            finally:
                # the fault clears: the retry finds the job free
                lock.release()

        fault = pool.submit(kill_then_clear)
        result = dg.materialize(
            [asset],
            instance=instance,
            partition_key=key,
            resources={"record_store": RecordStoreResource(database_url=pg_url)},
            run_config=dg.RunConfig(
                ops={"imported_file": ImportConfig(path=str(path), account=acct.slug, batch_size=BATCH)}
            ),
            raise_on_error=False,
        )
        failed = fault.result()

    assert result.success
    assert instance.get_run_by_id(result.run_id).status == dg.DagsterRunStatus.SUCCESS
    types = [e.event_type_value for e in result.all_events]
    assert (types.count("STEP_UP_FOR_RETRY"), types.count("STEP_RESTARTED"), types.count("STEP_FAILURE")) == (1, 1, 0)
    [retry] = [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    assert "terminating connection due to administrator command" in str(retry.event_specific_data.error)
    assert (
        failed.rows_committed == 2 * BATCH
        and "terminating connection due to administrator command" in failed.error_message
    )
    [done] = history(acct)
    assert completed(done) == (rows, rows, rows, 0, 0)
    assert done.dagster_run_id == result.run_id
    assert records(acct, done.id) == exactly(rows)


def test_an_import_marked_canceling_stops_at_the_next_batch(
    pg_url: str, instance: dg.DagsterInstance, acct: Account, tmp_path: Path
) -> None:
    """A run Dagster cannot interrupt (its worker on a lost host) is only marked: the import must notice."""
    path = applicants_csv(tmp_path / "marked.csv", 5 * BATCH, late_from=2 * BATCH + 1)
    key = dropzone.partition_key("applications", path.name, dropzone.file_sha256(path))
    instance.add_dynamic_partitions(import_files.name, [key])
    with job_row_locked(acct) as lock:

        def mark_canceling() -> None:
            try:
                wait_for(lock.waiters, "the import to wait inside batch 3")
                [run] = instance.get_runs(limit=1)
                instance.report_run_canceling(run)
            finally:
                lock.release()

        marker = threading.Thread(target=mark_canceling)
        marker.start()
        try:
            result = dg.materialize(
                [_build_imported_file(None)],
                instance=instance,
                partition_key=key,
                resources={"record_store": RecordStoreResource(database_url=pg_url)},
                run_config=dg.RunConfig(
                    ops={"imported_file": ImportConfig(path=str(path), account=acct.slug, batch_size=BATCH)}
                ),
                raise_on_error=False,
            )
        finally:
            marker.join()
    assert instance.get_run_by_id(result.run_id).status == dg.DagsterRunStatus.CANCELED
    types = event_types(instance, result.run_id)
    assert "STEP_UP_FOR_RETRY" not in types and "STEP_RESTARTED" not in types
    # batch 3 was already being written when the run was marked: it commits, batch 4 never starts
    [row] = history(acct)
    assert (row.status, row.rows_committed, row.created) == ("cancelled", 3 * BATCH, 3 * BATCH)
    assert row.finished_at is not None and "stopped on request" in row.error_message
    assert records(acct, row.id) == exactly(3 * BATCH)


def test_a_killed_run_worker_fails_the_run_and_the_same_command_resumes(acct: Account, tmp_path: Path) -> None:
    """kill -9 of an import's run worker mid-file, then `bulkops import` again: same history row, nothing twice."""
    rows = 1000
    path = applicants_csv(tmp_path / "killed.csv", rows, late_from=2 * BATCH + 1)
    var = tmp_path / "var"
    home = var / "dagster"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_", "BULKOPS_"))}
    env.update(
        BULKOPS_VAR_DIR=str(var),
        BULKOPS_DATABASE_URL=acct.store.engine.url.render_as_string(hide_password=False),
        DAGSTER_HOME=str(home),
        PYTHONPATH=str(REPO),
    )
    bulkops = str(Path(sys.executable).with_name("bulkops"))
    command = [bulkops, "import", str(path), "--account", acct.slug, "--batch-size", str(BATCH)]

    with job_row_locked(acct) as lock:
        first = subprocess.Popen(
            command, env=env, cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        try:
            # two batches committed, the third waits on the locked job row
            wait_for(lock.waiters, "the import to wait on the locked job", lambda: first.poll() is None)
            [before] = history(acct)
            assert (before.status, before.rows_committed) == ("processing", 2 * BATCH)
            with dg.DagsterInstance.from_config(str(home)) as instance:
                [killed] = instance.get_runs()
                pids = kill_run(instance, killed.run_id)
            wait_for(lambda: all(process_gone(p) for p in pids), "the run worker to die")
        finally:
            lock.release()
        output = first.communicate(timeout=WAIT_S)[0].decode()
    # the command waited for the run and says it failed
    assert first.returncode == 1, output
    assert killed.run_id in output
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert instance.get_run_by_id(killed.run_id).status == dg.DagsterRunStatus.FAILURE

    rerun = rerun_after_kill(command, env=env, cwd=tmp_path, home=home, killed_run_id=killed.run_id, killed_pids=pids)
    [done] = history(acct)
    assert done.id == before.id, "the re-run resumed the killed import"
    assert done.dagster_run_id == rerun.run_id
    assert completed(done) == (rows, rows, rows, 0, 0)
    assert records(acct, done.id) == exactly(rows)
