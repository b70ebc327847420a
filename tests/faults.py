"""Faults injected from outside a run: a row lock that holds a run at a known batch, kill -9 of its
processes, a terminated database backend; and what an account's import really holds.

A run is stopped at a known point without timing assumptions: a row it needs is held `FOR UPDATE`
by a connection of the test's own (PostgreSQL), so the run commits the batches before it and then
waits inside the next one until the test acts.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import sqlalchemy as sa

from connectors.store import RecordStore, schema
from pipelines.instance import PROCESS_TAG

# generous: starting a run worker alone took 7 s on a loaded 2-core machine; waits end as soon as the event happens
WAIT_S = 300.0
BATCH = 200
HEADER = "Application ID,First Name,Last Name,Email,Job Code,Job Title,Stage\n"
LATE_JOB = "LATE-1"

# set by .ci/run: there a missing tool or privilege is a failure, not a skip, so CI never passes on less
STRICT = os.environ.get("BULKOPS_STRICT_SKIPS") == "1"


def skip_unless(condition: bool, reason: str) -> None:
    """Skip the test when CONDITION is false (a tool or privilege this machine lacks); fail instead under CI."""
    if condition:
        return
    if STRICT:
        pytest.fail(f"{reason} (CI must provide it: see .ci/run)", pytrace=False)
    pytest.skip(reason)


def wait_for(condition: Callable[[], Any], what: str, alive: Callable[[], bool] = lambda: True) -> Any:
    """Poll CONDITION until it returns something truthy; fail after WAIT_S or when ALIVE turns false."""
    deadline = time.monotonic() + WAIT_S
    while not (value := condition()):
        assert alive(), f"gave up waiting for {what}: the run is no longer going"
        assert time.monotonic() < deadline, f"gave up waiting for {what} after {WAIT_S}s"
        time.sleep(0.05)
    return value


class RowLock:
    """One row held FOR UPDATE by a connection of its own (PostgreSQL): writers needing it wait."""

    def __init__(self, store: RecordStore, table: sa.Table, row_id: uuid.UUID) -> None:
        self.store = store
        self.conn = store.engine.connect()
        self.tx = self.conn.begin()
        self.pid = self.conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()
        self.conn.execute(sa.select(table.c.id).where(table.c.id == row_id).with_for_update())

    def waiters(self) -> list[int]:
        """Backends waiting for this lock."""
        with self.store.engine.connect() as c:
            query = sa.text("SELECT pid FROM pg_stat_activity WHERE :p = ANY(pg_blocking_pids(pid))")
            return list(c.execute(query, {"p": self.pid}).scalars())

    def release(self) -> None:
        if self.tx.is_active:
            try:
                self.tx.rollback()
            except sa.exc.DBAPIError as exc:
                # the server ended the session (a restart): the lock went with it
                if not exc.connection_invalidated:
                    raise

    def close(self) -> None:
        self.release()
        self.conn.close()


@contextmanager
def row_locked(store: RecordStore, table: sa.Table, row_id: uuid.UUID) -> Iterator[RowLock]:
    lock = RowLock(store, table, row_id)
    try:
        yield lock
    finally:
        lock.close()


def run_pids(instance: dg.DagsterInstance, run_id: str) -> list[int]:
    """The pids of the processes running RUN_ID's step, as the step recorded them (`bulkops/process`)."""
    run = instance.get_run_by_id(run_id)
    tag, _, owner = (run.tags.get(PROCESS_TAG, "") if run else "").partition("@")
    if owner != run_id or not tag:
        return []
    return [int(p.split(":")[1]) for p in tag.split(",")]


def kill_run(instance: dg.DagsterInstance, run_id: str) -> list[int]:
    """kill -9 every process running RUN_ID (its run worker and step process); their pids."""
    pids = run_pids(instance, run_id)
    assert pids, f"run {run_id} recorded no process"
    for pid in pids:
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return pids


def process_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # a killed child of a process that has not reaped it yet is a zombie: gone all the same
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def zombie_children() -> list[int]:
    """Children of this process that exited and were never reaped."""
    left = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] == "Z" and int(fields[1]) == os.getpid():
            left.append(int(stat.parent.name))
    return left


# imports


@dataclass
class Account:
    store: RecordStore
    slug: str
    id: uuid.UUID


def new_account(store_url: str) -> Account:
    store = RecordStore(store_url)
    slug = f"t-{uuid.uuid4().hex[:10]}"
    return Account(store, slug, store.ensure_account(slug))


def applicants_csv(path: Path, rows: int, late_from: int) -> Path:
    """ROWS applications, one candidate each; rows numbered LATE_FROM and up name job LATE_JOB."""
    lines = [
        f"APP-{i:05d},First{i},Last{i},person{i}@example.com,{LATE_JOB if i >= late_from else 'EARLY-1'},Engineer,Applied\n"
        for i in range(1, rows + 1)
    ]
    path.write_text(HEADER + "".join(lines))
    return path


@contextmanager
def job_row_locked(acct: Account, code: str = LATE_JOB) -> Iterator[RowLock]:
    """Job CODE created and held FOR UPDATE: imports of rows naming it wait (their foreign-key check needs it)."""
    job_id = uuid.uuid4()
    with acct.store.begin() as conn:
        conn.execute(schema.jobs.insert().values(id=job_id, account_id=acct.id, code=code, title="Engineer"))
    with row_locked(acct.store, schema.jobs, job_id) as lock:
        yield lock


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
                log.c.change_set_id == import_id,
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


def rerun_after_kill(
    command: list[str], *, env: dict[str, str], cwd: Path, home: Path, killed_run_id: str, killed_pids: list[int]
) -> dg.DagsterRun:
    """Run COMMAND again after its first run's worker was killed: it must exit 0 through a new run
    that succeeded in processes other than the killed ones. Returns that run."""
    import subprocess

    again = subprocess.run(
        command, check=False, env=env, cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=WAIT_S
    )
    assert again.returncode == 0, again.stdout + again.stderr
    with dg.DagsterInstance.from_config(str(home)) as instance:
        [rerun] = [r for r in instance.get_runs() if r.run_id != killed_run_id]
        assert rerun.status == dg.DagsterRunStatus.SUCCESS
        pids = run_pids(instance, rerun.run_id)
        assert pids and not set(pids) & set(killed_pids)
    return rerun
