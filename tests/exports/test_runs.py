"""An export run launched by the product, terminated from the UI or killed with -9, leaves no file (the session's
`dagster dev`); the retry of a killed one writes the whole file."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from pipelines import runs
from pipelines.exports.config import ExportConfig, run_export
from pipelines.exports.launch import export_result, launch_export
from tests.dagster_deployment import Deployment
from tests.exports.conftest import seed
from tests.faults import WAIT_S, kill_run, new_account, process_gone, wait_for

pytestmark = [pytest.mark.postgres, pytest.mark.slow, pytest.mark.xdist_group("dagster_dev")]

TERMINATE = """
mutation Terminate($runId: String!) { terminateRun(runId: $runId) { __typename } }
"""


@contextmanager
def tags_locked(store_url: str) -> Iterator[callable]:
    """The tags table held ACCESS EXCLUSIVE by a connection of its own: an export reading tags waits."""
    engine = sa.create_engine(store_url)
    conn = engine.connect()
    tx = conn.begin()
    conn.execute(sa.text("LOCK TABLE tags IN ACCESS EXCLUSIVE MODE"))
    pid = conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()

    def waiters() -> list[int]:
        with engine.connect() as c:
            query = sa.text("SELECT pid FROM pg_stat_activity WHERE :p = ANY(pg_blocking_pids(pid))")
            return list(c.execute(query, {"p": pid}).scalars())

    try:
        yield waiters
    finally:
        tx.rollback()
        conn.close()
        engine.dispose()


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_a_terminated_export_run_is_canceled_and_leaves_no_file(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, fmt: str
) -> None:
    monkeypatch.setenv("DAGSTER_HOME", str(deployment.home))
    monkeypatch.setenv("BULKOPS_VAR_DIR", deployment.env["BULKOPS_VAR_DIR"])
    monkeypatch.delenv("BULKOPS_DAGSTER_GRAPHQL_URL", raising=False)
    acct = new_account(deployment.store_url)
    seed(acct.store, acct.id, n=20)
    out = tmp_path / "out"
    config = ExportConfig(account=acct.slug, format=fmt, out_dir=str(out), columns=["id", "tags"])
    with tags_locked(deployment.store_url) as waiters:
        run_id = launch_export(config, account_id=acct.id, database_url=deployment.store_url)
        # the run waits for the tags with its file begun (CSV: the temporary file; xlsx builds it at the end)
        wait_for(waiters, "the export to wait on the locked tags")
        if fmt == "csv":
            assert [p.name.endswith(".tmp") for p in out.iterdir()] == [True]
        result = deployment.graphql(TERMINATE, {"runId": run_id})
        assert result["terminateRun"]["__typename"] == "TerminateRunSuccess"
        with deployment.instance() as instance:
            status = runs.wait_for_run(run_id, instance=instance, timeout=WAIT_S)
    assert status == dg.DagsterRunStatus.CANCELED
    assert list(out.iterdir()) == []
    acct.store.dispose()


def test_a_killed_export_run_fails_leaves_no_file_and_its_retry_writes_the_whole_file(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DAGSTER_HOME", str(deployment.home))
    monkeypatch.setenv("BULKOPS_VAR_DIR", deployment.env["BULKOPS_VAR_DIR"])
    monkeypatch.delenv("BULKOPS_DAGSTER_GRAPHQL_URL", raising=False)
    acct = new_account(deployment.store_url)
    seed(acct.store, acct.id, n=20)
    out = tmp_path / "out"
    config = ExportConfig(account=acct.slug, out_dir=str(out), name="killed", columns=["external_id", "stage", "tags"])
    final = out / "killed.csv"
    with deployment.instance() as instance:
        with tags_locked(deployment.store_url) as waiters:
            run_id = launch_export(config, account_id=acct.id, database_url=deployment.store_url)
            # the run waits for the tags with its temporary file begun
            wait_for(waiters, "the export to wait on the locked tags")
            [tmp] = list(out.iterdir())
            assert tmp.name.startswith(".killed.csv.") and tmp.name.endswith(".tmp")
            pids = kill_run(instance, run_id)
            wait_for(lambda: all(process_gone(p) for p in pids), "the run worker to die")
            assert runs.wait_for_run(run_id, instance=instance, timeout=WAIT_S) == dg.DagsterRunStatus.FAILURE
            # nothing under the final name; the killed writer's temporary file is all there is
            assert list(out.iterdir()) == [tmp]
            assert export_result(instance, run_id) is None

        # run retries (dagster.local.yaml) re-execute a run whose worker crashed
        def retry() -> dg.DagsterRun | None:
            found = instance.get_runs(filters=dg.RunsFilter(tags={"dagster/root_run_id": run_id}))
            return found[0] if found else None

        retried = wait_for(retry, "the daemon to retry the killed run")
        assert runs.wait_for_run(retried.run_id, instance=instance, timeout=WAIT_S) == dg.DagsterRunStatus.SUCCESS
        written = export_result(instance, retried.run_id)
        warnings = [r.user_message for r in instance.all_logs(retried.run_id) if r.level == logging.WARNING]

    # the retry removed the dead writer's file and wrote the whole export
    assert list(out.iterdir()) == [final]
    assert any(tmp.name in m and "process died" in m for m in warnings), warnings
    assert (written.path, written.rows) == (str(final), 19)
    expected = run_export(acct.store, config.model_copy(update={"out_dir": str(tmp_path / "expected")}))
    assert final.read_bytes() == expected.path.read_bytes()
    ids = [line.split(",")[0] for line in final.read_text().splitlines()[1:]]
    assert sorted(ids) == sorted(f"A{i}" for i in range(20) if i != 1)  # A1 is deleted
    acct.store.dispose()
