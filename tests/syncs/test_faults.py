"""A sync run whose run worker is killed with -9 mid-sync, then run again: same sync run, nothing twice.

The run is stopped at a known batch without timing assumptions: source rows from a given point on
name a job whose row a connection of the test's own holds `FOR UPDATE`, so the sync commits the
batches before it and then waits inside the next one (its foreign-key check needs that row) until
the test kills its process (tests/faults.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from connectors.store import schema
from tests.faults import (
    BATCH,
    LATE_JOB,
    WAIT_S,
    Account,
    job_row_locked,
    kill_run,
    new_account,
    process_gone,
    rerun_after_kill,
    wait_for,
)
from tests.syncs.conftest import write_connection

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
runs_t, apps, log = schema.sync_runs, schema.applications, schema.audit_log


@pytest.fixture
def acct(pg_url: str) -> Iterator[Account]:
    account = new_account(pg_url)
    yield account
    account.store.dispose()


def _sync_runs(acct: Account) -> list[sa.Row]:
    with acct.store.engine.connect() as c:
        return list(c.execute(sa.select(runs_t).where(runs_t.c.account_id == acct.id).order_by(runs_t.c.started_at)))


def _held(acct: Account, run_id) -> dict[str, int]:  # type: ignore[no-untyped-def]
    """What the account really holds: applications, distinct external ids, the run's create audit rows."""

    def scalar(q) -> int:  # type: ignore[no-untyped-def]
        with acct.store.engine.connect() as c:
            return c.execute(q).scalar()

    mine = apps.c.account_id == acct.id
    return {
        "applications": scalar(sa.select(sa.func.count()).select_from(apps).where(mine)),
        "external_ids": scalar(sa.select(sa.func.count(sa.distinct(apps.c.external_id))).where(mine)),
        "audited": scalar(
            sa.select(sa.func.count())
            .select_from(log)
            .where(log.c.change_set_id == run_id, log.c.entity_type == "applications", log.c.operation.like("%create"))
        ),
    }


def test_a_killed_sync_run_worker_fails_the_run_and_the_next_run_resumes_it(
    acct: Account, pg_source, tmp_path: Path
) -> None:
    rows = 5 * BATCH
    # rows 1-400 name jobs that are free, rows 401-1000 the job the test holds
    pg_source.add(2 * BATCH)
    pg_source.add(rows - 2 * BATCH, start=2 * BATCH + 1, job_code=LATE_JOB)
    var = tmp_path / "var"
    home = var / "dagster"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_", "BULKOPS_"))}
    env.update(
        BULKOPS_VAR_DIR=str(var),
        BULKOPS_DATABASE_URL=acct.store.engine.url.render_as_string(hide_password=False),
        BULKOPS_SYNCS_DIR=str(tmp_path / "syncs"),
        DAGSTER_HOME=str(home),
        HR_DB_URL=pg_source.url,
        PYTHONPATH=str(REPO),
    )
    write_connection(tmp_path / "syncs", "hr", acct.slug, "HR_DB_URL", batch_size=BATCH)
    command = [str(Path(sys.executable).with_name("bulkops")), "syncs", "run", "hr"]

    with job_row_locked(acct) as lock:
        first = subprocess.Popen(
            command, env=env, cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        try:
            # two batches committed, the third waits on the locked job row
            wait_for(lock.waiters, "the sync to wait on the locked job", lambda: first.poll() is None)
            [before] = _sync_runs(acct)
            assert (before.status, before.records_read, before.created) == ("processing", 2 * BATCH, 2 * BATCH)
            with dg.DagsterInstance.from_config(str(home)) as instance:
                [killed] = instance.get_runs()
                pids = kill_run(instance, killed.run_id)
            wait_for(lambda: all(process_gone(p) for p in pids), "the run worker to die")
        finally:
            lock.release()
        output = first.communicate(timeout=WAIT_S)[0].decode()
    # the command noticed the dead worker and says the run failed
    assert first.returncode == 1, output
    assert killed.run_id in output
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert instance.get_run_by_id(killed.run_id).status == dg.DagsterRunStatus.FAILURE
    [stopped] = _sync_runs(acct)
    # the batch in flight was rolled back with the connection: only whole batches stand
    assert (stopped.records_read, stopped.created, stopped.updated) == (2 * BATCH, 2 * BATCH, 0)
    assert _held(acct, stopped.id) == dict.fromkeys(("applications", "external_ids", "audited"), 2 * BATCH)

    rerun = rerun_after_kill(command, env=env, cwd=tmp_path, home=home, killed_run_id=killed.run_id, killed_pids=pids)
    [done] = _sync_runs(acct)
    assert done.id == before.id, "the next run resumed the killed sync run"
    assert done.dagster_run_id == rerun.run_id
    counts = (done.status, done.records_read, done.created, done.updated, done.unchanged, done.errors, done.conflicts)
    assert counts == ("completed", rows, rows, 0, 0, 0, 0)
    assert _held(acct, done.id) == dict.fromkeys(("applications", "external_ids", "audited"), rows)
    # the cursor reached the last row: a next run reads nothing
    assert done.cursor["key"] == f"A{rows:06d}"
    assert (
        subprocess.run(command, check=False, env=env, cwd=tmp_path, capture_output=True, timeout=WAIT_S).returncode == 0
    )
    last = _sync_runs(acct)[-1]
    assert last.id != done.id and (last.records_read, last.created) == (0, 0)
