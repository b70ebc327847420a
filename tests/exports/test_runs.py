"""An export run launched by the product and terminated from the UI leaves no file (the session's `dagster dev`)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from pipelines import runs
from pipelines.exports.config import ExportConfig
from pipelines.exports.launch import launch_export
from tests.dagster_deployment import Deployment
from tests.exports.conftest import seed
from tests.faults import WAIT_S, new_account, wait_for

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
