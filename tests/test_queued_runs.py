"""Runs submitted to a running Dagster deployment: `bulkops import --submit` and bulk jobs over GraphQL.

The session's `dagster dev` (webserver + daemon, queued run coordinator; tests/dagster_deployment.py)
on a private Dagster home and a fresh PostgreSQL record store; runs go through its queue and its
daemon like production's. The tests share that deployment, so they run on one xdist worker (loadgroup).
"""

from __future__ import annotations

import uuid
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from connectors.store import RecordStore, schema
from pipelines.bulk import launch, service
from pipelines.cli import main
from pipelines.imports.launch import wait_for_run
from tests.dagster_deployment import Deployment, free_port

pytestmark = [pytest.mark.postgres, pytest.mark.xdist_group("dagster_dev")]

CSV = "Application ID,First Name,Last Name,Email,Job Code,Job Title\n" + "".join(
    f"Q-{i},First{i},Last{i},queued{i}@example.com,ENG-{i % 2},Engineer\n" for i in range(6)
)


@pytest.fixture
def deployed(deployment: Deployment, monkeypatch: pytest.MonkeyPatch) -> Deployment:
    """This process talks to the deployment like a CLI user would."""
    for key in ("DAGSTER_HOME", "BULKOPS_VAR_DIR", "BULKOPS_DATABASE_URL", "BULKOPS_DAGSTER_GRAPHQL_URL"):
        monkeypatch.setenv(key, deployment.env[key])
    return deployment


def test_import_submit_queues_the_run_and_the_daemon_imports_the_file(deployed: Deployment, tmp_path: Path) -> None:
    slug = f"q-{uuid.uuid4().hex[:8]}"
    store = RecordStore(deployed.store_url)
    account = store.ensure_account(slug)
    path = tmp_path / "queued.csv"
    path.write_text(CSV)

    result = CliRunner().invoke(
        main, ["import", str(path), "--entity", "applications", "--account", slug, "--submit", "--timeout", "240"]
    )

    assert result.exit_code == 0, result.output
    run_id = result.output.split("queued dagster run: ")[1].split()[0]
    assert f"dagster run {run_id}: SUCCESS" in result.output
    assert "applications  queued.csv" in result.output  # the history row of that run
    with deployed.instance() as instance:
        run = instance.get_run_by_id(run_id)
        assert run.status == dg.DagsterRunStatus.SUCCESS
        assert run.tags["bulkops/launched_by"] == "cli-submit"
        assert run.tags["bulkops/kind"] == "import"  # the queue's import lane
        assert run.tags["dagster/partition"].startswith("applications/queued.csv@")
        # it went through the queue, not straight to a worker
        assert any(
            e.dagster_event and e.dagster_event.event_type_value == "PIPELINE_ENQUEUED"
            for e in instance.all_logs(run_id)
        )
    with store.engine.connect() as conn:
        n = conn.execute(
            sa.select(sa.func.count())
            .select_from(schema.applications)
            .where(schema.applications.c.account_id == account)
        ).scalar()
        history = conn.execute(
            sa.select(schema.import_history.c.status, schema.import_history.c.created).where(
                schema.import_history.c.dagster_run_id == run_id
            )
        ).one()
    store.dispose()
    assert n == 6
    assert tuple(history) == ("completed", 6)


def test_import_submit_reports_a_failed_run_and_exits_1(deployed: Deployment, tmp_path: Path) -> None:
    path = tmp_path / "orphan.csv"
    path.write_text(CSV)
    # no such account: the run fails in the worker, the CLI says so
    result = CliRunner().invoke(
        main, ["import", str(path), "--account", f"missing-{uuid.uuid4().hex[:6]}", "--submit", "--timeout", "240"]
    )
    assert result.exit_code == 1, result.output
    assert ": FAILURE" in result.output
    assert f"/runs/{result.output.split('queued dagster run: ')[1].split()[0]}" in result.output


def test_import_submit_names_an_unreachable_deployment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BULKOPS_DAGSTER_GRAPHQL_URL", f"http://127.0.0.1:{free_port()}")
    path = tmp_path / "a.csv"
    path.write_text(CSV)
    result = CliRunner().invoke(main, ["import", str(path), "--submit", "--no-wait"])
    assert result.exit_code == 1
    assert "127.0.0.1" in result.output and "Traceback" not in result.output


def test_bulk_job_submitted_over_graphql_runs_through_the_queue(deployed: Deployment) -> None:
    store = RecordStore(deployed.store_url)
    account = store.ensure_account(f"b-{uuid.uuid4().hex[:8]}")
    with store.begin() as conn:
        cand, job = uuid.uuid4(), uuid.uuid4()
        conn.execute(
            schema.users.insert().values(
                id=cand, account_id=account, email="b@example.com", email_normalized="b@example.com"
            )
        )
        conn.execute(schema.jobs.insert().values(id=job, account_id=account, title="Engineer"))
        ids = [uuid.uuid4() for _ in range(5)]
        conn.execute(
            schema.applications.insert(),
            [{"id": i, "account_id": account, "candidate_id": cand, "job_id": job} for i in ids],
        )
    created = service.create_job(
        store,
        account,
        created_by=None,
        entity_type="applications",
        operation="status_update",
        entity_ids=ids,
        params={"status": "archived"},
    )

    run_id = launch.launch_bulk_job(uuid.UUID(created["id"]))

    assert wait_for_run(run_id, timeout=240) == "SUCCESS"
    job_row = service.get_job(store, account, uuid.UUID(created["id"]))
    assert (job_row["status"], job_row["processed_count"], job_row["dagster_run_id"]) == ("completed", 5, run_id)
    with store.engine.connect() as conn:
        statuses = (
            conn.execute(sa.select(schema.applications.c.status).where(schema.applications.c.id.in_(ids)))
            .scalars()
            .all()
        )
    store.dispose()
    assert statuses == ["archived"] * 5
    with deployed.instance() as instance:
        assert any(
            e.dagster_event and e.dagster_event.event_type_value == "PIPELINE_ENQUEUED"
            for e in instance.all_logs(run_id)
        )
