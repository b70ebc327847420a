"""Faults an import must survive on PostgreSQL: a run terminated mid-file, a database fault that clears.

Both tests stop the import at a known batch without timing assumptions: rows from a given point
on name a job whose row another connection holds `FOR UPDATE`, so the import commits the batches
before it and then waits inside the next one (its foreign-key check needs that row) until the
test acts.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import sqlalchemy as sa

from connectors.store import RecordStore, schema
from pipelines.definitions import defs
from pipelines.imports import dropzone
from pipelines.imports.assets import SHA_TAG, ImportConfig, _build_imported_file, import_files
from resources import RecordStoreResource

pytestmark = pytest.mark.postgres

BATCH = 200
HEADER = "Application ID,First Name,Last Name,Email,Job Code,Job Title,Stage\n"
LATE_JOB = "LATE-1"
PID_TAG = "bulkops/pid"
# generous: starting a step process alone took 7 s on a loaded 2-core machine; waits end as soon as the event happens
WAIT_S = 300.0
REPO = Path(__file__).resolve().parents[2]

# a run worker like the one Dagster's run launcher starts: executes the run created in the test's
# instance (multiprocess executor, so the step runs in its own process) and records its pid
_RUN_WORKER = textwrap.dedent("""
    import os, sys
    import dagster as dg
    from dagster._core.definitions.reconstruct import ReconstructableRepository
    from dagster._core.execution.api import execute_run
    from dagster._core.instance.ref import InstanceRef
    from dagster._utils.interrupts import capture_interrupts

    run_id = sys.argv[1]
    with capture_interrupts():
        ref = dg.deserialize_value(os.environ["BULKOPS_TEST_INSTANCE_REF"], InstanceRef)
        with dg.DagsterInstance.from_ref(ref) as instance:
            instance.add_run_tags(run_id, {"bulkops/pid": str(os.getpid())})
            repo = ReconstructableRepository.for_module("pipelines.definitions", "defs", os.getcwd())
            job = repo.get_reconstructable_job("import_job")
            result = execute_run(job, instance.get_run_by_id(run_id), instance)
    sys.exit(0 if result.success else 1)
""")


@dataclass
class Account:
    store: RecordStore
    slug: str
    id: uuid.UUID


@pytest.fixture
def acct(pg_url: str) -> Iterator[Account]:
    store = RecordStore(pg_url)
    slug = f"t-{uuid.uuid4().hex[:10]}"
    yield Account(store, slug, store.ensure_account(slug))
    store.dispose()


def applicants_csv(path: Path, rows: int, late_from: int) -> Path:
    """ROWS applications, one candidate each; rows numbered LATE_FROM and up name job LATE_JOB."""
    lines = [
        f"APP-{i:05d},First{i},Last{i},person{i}@example.com,{LATE_JOB if i >= late_from else 'EARLY-1'},Engineer,Applied\n"
        for i in range(1, rows + 1)
    ]
    path.write_text(HEADER + "".join(lines))
    return path


def wait_for(condition: Callable[[], Any], what: str, alive: Callable[[], bool] = lambda: True) -> Any:
    """Poll CONDITION until it returns something truthy; fail after WAIT_S or when ALIVE turns false."""
    deadline = time.monotonic() + WAIT_S
    while not (value := condition()):
        assert alive(), f"gave up waiting for {what}: the import is no longer running"
        assert time.monotonic() < deadline, f"gave up waiting for {what} after {WAIT_S}s"
        time.sleep(0.02)
    return value


class JobRowLock:
    """A job row held FOR UPDATE by a connection of its own: imports of rows naming the job wait."""

    def __init__(self, acct: Account, code: str) -> None:
        job_id = uuid.uuid4()
        with acct.store.begin() as conn:
            conn.execute(schema.jobs.insert().values(id=job_id, account_id=acct.id, code=code, title="Engineer"))
        self.store = acct.store
        self.conn = acct.store.engine.connect()
        self.tx = self.conn.begin()
        self.pid = self.conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()
        self.conn.execute(sa.select(schema.jobs.c.id).where(schema.jobs.c.id == job_id).with_for_update())

    def waiters(self) -> list[int]:
        """Backends waiting for this lock."""
        with self.store.engine.connect() as c:
            query = sa.text("SELECT pid FROM pg_stat_activity WHERE :p = ANY(pg_blocking_pids(pid))")
            return list(c.execute(query, {"p": self.pid}).scalars())

    def release(self) -> None:
        if self.tx.is_active:
            self.tx.rollback()

    def close(self) -> None:
        self.release()
        self.conn.close()


@contextmanager
def job_row_locked(acct: Account, code: str) -> Iterator[JobRowLock]:
    lock = JobRowLock(acct, code)
    try:
        yield lock
    finally:
        lock.close()


def history(acct: Account) -> list[sa.Row]:
    h = schema.import_history
    with acct.store.engine.connect() as c:
        return list(
            c.execute(sa.select(h).where(h.c.account_id == acct.id, h.c.dry_run == sa.false()).order_by(h.c.started_at))
        )


def records(acct: Account, import_id: uuid.UUID) -> dict[str, int]:
    """What is really in the account: applications (and distinct external ids), forms, candidates, audit rows."""
    a, f, u, log = schema.applications, schema.form_submissions, schema.users, schema.audit_log

    def scalar(query: Any) -> int:
        with acct.store.engine.connect() as c:
            return c.execute(query).scalar()

    return {
        "applications": scalar(sa.select(sa.func.count()).select_from(a).where(a.c.account_id == acct.id)),
        "external_ids": scalar(sa.select(sa.func.count(sa.distinct(a.c.external_id))).where(a.c.account_id == acct.id)),
        "forms": scalar(sa.select(sa.func.count()).select_from(f).where(f.c.account_id == acct.id)),
        "candidates": scalar(
            sa.select(sa.func.count()).select_from(u).where(u.c.account_id == acct.id, u.c.role == "candidate")
        ),
        "audited": scalar(
            sa.select(sa.func.count())
            .select_from(log)
            .where(
                log.c.account_id == acct.id,
                log.c.import_id == import_id,
                log.c.operation == "import.create",
                log.c.entity_type == "applications",
            )
        ),
    }


def completed(row: sa.Row) -> tuple[int, ...]:
    """rows_committed, rows_read, created, updated, errors of a completed history row."""
    assert row.status == "completed", (row.status, row.error_message)
    return row.rows_committed, row.rows_read, row.created, row.updated, row.errors


def exactly(n: int) -> dict[str, int]:
    return dict.fromkeys(("applications", "external_ids", "forms", "candidates", "audited"), n)


def event_types(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    return [r.dagster_event.event_type_value for r in instance.all_logs(run_id) if r.dagster_event is not None]


def terminate(instance: dg.DagsterInstance, run_id: str) -> None:
    """What Dagster's run launcher does on Terminate: mark the run CANCELING, interrupt its worker."""
    run = instance.get_run_by_id(run_id)
    instance.report_run_canceling(run)
    os.kill(int(run.tags[PID_TAG]), signal.SIGINT)


def test_a_terminated_import_run_keeps_whole_batches_and_a_rerun_finishes_the_file(
    pg_url: str, instance: dg.DagsterInstance, acct: Account, tmp_path: Path
) -> None:
    rows = 1000
    path = applicants_csv(tmp_path / "applicants.csv", rows, late_from=2 * BATCH + 1)
    sha = dropzone.file_sha256(path)
    key = dropzone.partition_key("applications", path.name, sha)
    instance.add_dynamic_partitions(import_files.name, [key])
    job = defs.resolve_job_def("import_job")
    run_config = {
        "ops": {"imported_file": {"config": {"path": str(path), "account": acct.slug, "batch_size": BATCH}}},
        "resources": {"record_store": {"config": {"database_url": pg_url}}},
    }
    tags = {"dagster/partition": key, SHA_TAG: sha}

    with job_row_locked(acct, LATE_JOB) as lock:
        run = instance.create_run_for_job(job, run_config=run_config, tags=tags)
        worker = subprocess.Popen(
            [sys.executable, "-c", _RUN_WORKER, run.run_id],
            env={**os.environ, "BULKOPS_TEST_INSTANCE_REF": dg.serialize_value(instance.get_ref())},
            stdin=subprocess.DEVNULL,
            cwd=REPO,
        )

        def running() -> bool:
            return worker.poll() is None

        try:
            # batches 1-2 commit; batch 3 waits on the locked job
            wait_for(lock.waiters, "the import to wait on the locked job", running)
            assert PID_TAG in instance.get_run_by_id(run.run_id).tags
            [before] = history(acct)
            assert (before.status, before.rows_committed) == ("processing", 2 * BATCH)

            terminate(instance, run.run_id)
            wait_for(lambda: history(acct)[0].status == "cancelled", "the import to record its cancellation", running)
        finally:
            # the interrupted batch may now run on in the server: it must never commit
            lock.release()
            try:
                worker.wait(timeout=60)
            finally:
                if worker.poll() is None:
                    worker.kill()

    assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.CANCELED
    assert "STEP_RESTARTED" not in event_types(instance, run.run_id)
    [cancelled] = history(acct)
    assert (cancelled.status, cancelled.rows_committed, cancelled.rows_read, cancelled.created, cancelled.errors) == (
        "cancelled",
        2 * BATCH,
        2 * BATCH,
        2 * BATCH,
        0,
    )
    assert cancelled.dagster_run_id == run.run_id
    assert records(acct, cancelled.id) == exactly(2 * BATCH)

    again = job.execute_in_process(
        run_config=run_config, instance=instance, partition_key=key, tags={SHA_TAG: sha}, raise_on_error=False
    )

    assert again.success
    [done] = history(acct)
    assert done.id == cancelled.id, "the re-run resumes the cancelled import"
    assert completed(done) == (rows, rows, rows, 0, 0)
    assert done.dagster_run_id == again.run_id
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

    with job_row_locked(acct, LATE_JOB) as lock, ThreadPoolExecutor(1) as pool:

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


def test_terminate_stops_an_in_process_import_at_the_next_batch(
    pg_url: str, instance: dg.DagsterInstance, acct: Account, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`bulkops import` runs in process: Terminate can only mark the run, the import must notice."""
    from pipelines.imports.assets import ImportConfig
    from pipelines.imports.launch import launch_import

    monkeypatch.setenv("BULKOPS_DATABASE_URL", pg_url)
    path = applicants_csv(tmp_path / "inproc.csv", 5 * BATCH, late_from=2 * BATCH + 1)
    with job_row_locked(acct, LATE_JOB) as lock:

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
            run_id, result = launch_import(
                path,
                "applications",
                acct.slug,
                ImportConfig(batch_size=BATCH),
                instance=instance,
                log_level="ERROR",
            )
        finally:
            marker.join()
    assert result is None
    assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.CANCELED
    types = event_types(instance, run_id)
    assert "STEP_UP_FOR_RETRY" not in types and "STEP_RESTARTED" not in types
    # batch 3 was already being written when the run was marked: it commits, batch 4 never starts
    [row] = history(acct)
    assert (row.status, row.rows_committed, row.created) == ("cancelled", 3 * BATCH, 3 * BATCH)
    assert row.finished_at is not None and "stopped on request" in row.error_message
    assert records(acct, row.id) == exactly(3 * BATCH)


def test_a_killed_bulkops_import_is_failed_and_the_same_command_resumes_at_once(acct: Account, tmp_path: Path) -> None:
    """`bulkops import` killed with -9 mid-file, then run again: no wait, same history row, nothing twice."""
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

    def processing() -> sa.Row | None:
        rows_ = history(acct)
        return rows_[0] if rows_ and rows_[0].rows_committed == 2 * BATCH else None

    with job_row_locked(acct, LATE_JOB) as lock:
        first = subprocess.Popen(command, env=env, cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        try:
            # two batches committed, the third waits on the locked job row
            before = wait_for(processing, "two committed batches", lambda: first.poll() is None)
            wait_for(lock.waiters, "the import to wait on the locked job", lambda: first.poll() is None)
            first.send_signal(signal.SIGKILL)
        finally:
            first.kill()
            first.wait()
    assert first.returncode == -signal.SIGKILL
    assert before.status == "processing"
    with dg.DagsterInstance.from_config(str(home)) as instance:
        [killed] = instance.get_runs()
        assert killed.status == dg.DagsterRunStatus.STARTED, "nothing else has noticed the death yet"

    again = subprocess.run(
        command,
        check=False,
        env=env,
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=WAIT_S,
    )

    assert again.returncode == 0, again.stdout + again.stderr
    with dg.DagsterInstance.from_config(str(home)) as instance:
        dead = instance.get_run_by_id(killed.run_id)
        assert dead.status == dg.DagsterRunStatus.FAILURE
        said = " ".join(e.dagster_event.message or "" for e in instance.all_logs(dead.run_id) if e.dagster_event)
        assert f"pid {killed.tags['bulkops/process'].split(':')[1]}" in said and "is gone" in said, said
        [rerun] = [r for r in instance.get_runs() if r.run_id != killed.run_id]
        assert rerun.status == dg.DagsterRunStatus.SUCCESS
        # it did not wait for the dead run: no retry of its step at all
        assert "STEP_UP_FOR_RETRY" not in event_types(instance, rerun.run_id)
    [done] = history(acct)
    assert done.id == before.id, "the re-run resumed the killed import"
    assert done.dagster_run_id == rerun.run_id
    assert completed(done) == (rows, rows, rows, 0, 0)
    assert records(acct, done.id) == exactly(rows)
