"""Runs launched by the product, seen and stopped through a real Dagster webserver, and killed from outside.

The session's `dagster dev` (tests/dagster_deployment.py) serves a private Dagster home and a
PostgreSQL record store. Each test launches with the product's own functions, by either route:
`webserver` (submitted over GraphQL, queued, started by the daemon) or `launcher` (no webserver
known to the caller: `dagster job launch` into the same instance). What the UI does (list a Dagster
job's runs, Terminate) is sent to the webserver as GraphQL, as the UI sends it.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from connectors.store import schema
from pipelines import runs
from pipelines.bulk import launch, service
from pipelines.imports.assets import ImportConfig
from pipelines.imports.launch import launch_import, start_import
from tests.bulk.conftest import Seeder, archive_job
from tests.dagster_deployment import Deployment
from tests.faults import (
    BATCH,
    WAIT_S,
    Account,
    applicants_csv,
    completed,
    exactly,
    history,
    job_row_locked,
    kill_run,
    new_account,
    process_gone,
    records,
    row_locked,
    wait_for,
)

pytestmark = [pytest.mark.postgres, pytest.mark.xdist_group("dagster_dev")]

ROUTES = ["webserver", "launcher"]
JOB_PAGE = """
query JobRuns($job: String!, $label: String!) {
  runsOrError(filter: {pipelineName: $job, tags: [{key: ".dagster/repository", value: $label}]}) {
    ... on Runs { results { runId status } }
  }
}
"""
TERMINATE = """
mutation Terminate($runId: String!) { terminateRun(runId: $runId) { __typename } }
"""


@pytest.fixture(params=ROUTES)
def route(request: pytest.FixtureRequest, deployment: Deployment, monkeypatch: pytest.MonkeyPatch) -> str:
    """This process uses the deployment's instance; on the webserver route it also knows the webserver."""
    monkeypatch.setenv("DAGSTER_HOME", str(deployment.home))
    monkeypatch.setenv("BULKOPS_VAR_DIR", deployment.env["BULKOPS_VAR_DIR"])
    if request.param == "webserver":
        monkeypatch.setenv("BULKOPS_DAGSTER_GRAPHQL_URL", deployment.url)
    else:
        monkeypatch.delenv("BULKOPS_DAGSTER_GRAPHQL_URL", raising=False)
    return request.param


@pytest.fixture
def acct(deployment: Deployment) -> Iterator[Account]:
    account = new_account(deployment.store_url)
    yield account
    account.store.dispose()


def on_job_page(deployment: Deployment, job: str) -> dict[str, str]:
    """Run id -> status of the runs the UI lists on JOB's page."""
    data = deployment.graphql(JOB_PAGE, {"job": job, "label": runs.repository_label()})
    return {r["runId"]: r["status"] for r in data["runsOrError"]["results"]}


def terminate_from_the_ui(deployment: Deployment, run_id: str) -> None:
    assert deployment.graphql(TERMINATE, {"runId": run_id})["terminateRun"]["__typename"] == "TerminateRunSuccess"


def final_status(deployment: Deployment, run_id: str) -> dg.DagsterRunStatus:
    with deployment.instance() as instance:
        return runs.wait_for_run(run_id, instance=instance, timeout=WAIT_S)


def test_a_bulk_job_run_is_on_its_job_page_and_terminate_in_the_ui_cancels_it(
    deployment: Deployment, route: str, acct: Account
) -> None:
    seed = Seeder(acct.store, acct.id)
    ids = seed.applications(10)
    job_id = archive_job(acct.store, acct.id, ids)
    # the 7th record held: the run commits three batches of two, then waits on it
    with row_locked(acct.store, schema.applications, ids[6]) as lock:
        run_id = launch.launch_bulk_job(job_id, database_url=deployment.store_url, batch_size=2)
        try:
            wait_for(lock.waiters, "the run to wait on the held record")
            assert on_job_page(deployment, "bulk_job").get(run_id) == "STARTED"
            terminate_from_the_ui(deployment, run_id)
        finally:
            lock.release()

    assert final_status(deployment, run_id) == dg.DagsterRunStatus.CANCELED
    job = service.get_job(acct.store, acct.id, job_id)
    assert (job["status"], job["processed_count"], job["failed_count"]) == ("cancelled", 6, 0)
    assert len(seed.audit(job_id)) == 6
    rows = seed.rows(schema.applications, ids)
    assert [rows[i].status for i in ids] == ["archived"] * 6 + ["active"] * 4


def test_without_a_webserver_a_burst_of_bulk_jobs_is_launched_one_slot_at_a_time(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch, acct: Account
) -> None:
    monkeypatch.setenv("DAGSTER_HOME", str(deployment.home))
    monkeypatch.delenv("BULKOPS_DAGSTER_GRAPHQL_URL", raising=False)
    monkeypatch.setenv("BULKOPS_DIRECT_LAUNCHES", "1")
    seed = Seeder(acct.store, acct.id)
    ids = seed.applications(4)
    job_ids = [archive_job(acct.store, acct.id, [record]) for record in ids]
    # as the API launches: each in a thread of its own, returning at once
    run_ids = [launch.launch_bulk_job(j, database_url=deployment.store_url, background=True) for j in job_ids]
    # the second is cancelled while its launch waits for the first one's slot: it gets no run
    assert service.request_cancel(acct.store, acct.id, job_ids[1])["status"] == "cancelled"
    launched = [run_ids[0], *run_ids[2:]]
    with deployment.instance() as instance:
        for run_id in launched:
            # a launch waiting for the slot has not created its run yet
            wait_for(lambda: instance.get_run_by_id(run_id), f"run {run_id} to be launched")  # noqa: B023
            assert runs.wait_for_run(run_id, instance=instance, timeout=WAIT_S) == dg.DagsterRunStatus.SUCCESS
        made = sorted((instance.get_run_record_by_id(r) for r in launched), key=lambda r: r.create_timestamp)
        # the launches take the slot in turn: the cancelled one's turn came before the third's
        assert instance.get_run_by_id(run_ids[1]) is None
    # one slot: each run was created only once the one before it had started its worker
    for before, after in itertools.pairwise(made):
        assert after.create_timestamp.timestamp() >= before.start_time, (
            before.dagster_run.run_id,
            after.dagster_run.run_id,
        )
    final = [service.get_job(acct.store, acct.id, j) for j in job_ids]
    assert [j["status"] for j in final] == ["completed", "cancelled", "completed", "completed"]
    # the cancelled job names no run (its launch was skipped), the others their own
    assert [j["dagster_run_id"] for j in final] == [run_ids[0], None, *run_ids[2:]]
    assert seed.rows(schema.applications, [ids[1]])[ids[1]].status == "active"


def test_an_import_run_is_on_its_job_page_and_terminate_in_the_ui_cancels_it_keeping_whole_batches(
    deployment: Deployment, route: str, acct: Account, tmp_path: Path
) -> None:
    rows = 1000
    path = applicants_csv(tmp_path / f"{route}.csv", rows, late_from=2 * BATCH + 1)
    options = ImportConfig(batch_size=BATCH)
    with job_row_locked(acct) as lock:
        run_id = start_import(path, "applications", acct.slug, options, database_url=deployment.store_url)
        try:
            # batches 1-2 commit; batch 3 waits on the locked job
            wait_for(lock.waiters, "the import to wait on the locked job")
            assert on_job_page(deployment, "import_job").get(run_id) == "STARTED"
            terminate_from_the_ui(deployment, run_id)
            wait_for(lambda: history(acct)[0].status == "cancelled", "the import to record its cancellation")
        finally:
            lock.release()

    assert final_status(deployment, run_id) == dg.DagsterRunStatus.CANCELED
    [cancelled] = history(acct)
    assert (cancelled.status, cancelled.rows_committed, cancelled.created) == ("cancelled", 2 * BATCH, 2 * BATCH)
    assert records(acct, cancelled.id) == exactly(2 * BATCH)

    again, result = launch_import(
        path, "applications", acct.slug, options, database_url=deployment.store_url, timeout=WAIT_S
    )

    assert result is not None and result.status == "completed"
    [done] = history(acct)
    assert (done.id, done.dagster_run_id) == (cancelled.id, again)
    assert completed(done) == (rows, rows, rows, 0, 0)
    assert records(acct, done.id) == exactly(rows)


def test_a_killed_import_run_worker_is_retried_by_the_daemon_and_resumes_without_duplicates(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch, acct: Account, tmp_path: Path
) -> None:
    monkeypatch.setenv("DAGSTER_HOME", str(deployment.home))
    monkeypatch.setenv("BULKOPS_DAGSTER_GRAPHQL_URL", deployment.url)
    rows = 1000
    path = applicants_csv(tmp_path / "killed.csv", rows, late_from=2 * BATCH + 1)
    options = ImportConfig(batch_size=BATCH)
    with deployment.instance() as instance:
        with job_row_locked(acct) as lock:
            run_id = start_import(path, "applications", acct.slug, options, database_url=deployment.store_url)
            try:
                wait_for(lock.waiters, "the import to wait on the locked job")
                [before] = history(acct)
                assert (before.status, before.rows_committed) == ("processing", 2 * BATCH)
                pids = kill_run(instance, run_id)
                wait_for(lambda: all(process_gone(p) for p in pids), "the run worker to die")
            finally:
                lock.release()
        assert runs.wait_for_run(run_id, instance=instance, timeout=WAIT_S) == dg.DagsterRunStatus.FAILURE

        # run retries (dagster.local.yaml) re-execute a run whose worker crashed
        def retry() -> dg.DagsterRun | None:
            found = instance.get_runs(filters=dg.RunsFilter(tags={"dagster/root_run_id": run_id}))
            return found[0] if found else None

        retried = wait_for(retry, "the daemon to retry the killed run")
        assert runs.wait_for_run(retried.run_id, instance=instance, timeout=WAIT_S) == dg.DagsterRunStatus.SUCCESS
    [done] = history(acct)
    assert done.id == before.id, "the retry resumed the killed import"
    assert done.dagster_run_id == retried.run_id
    assert completed(done) == (rows, rows, rows, 0, 0)
    assert records(acct, done.id) == exactly(rows)


def test_two_runs_on_the_same_bytes_never_run_at_once(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch, acct: Account, tmp_path: Path
) -> None:
    monkeypatch.setenv("DAGSTER_HOME", str(deployment.home))
    monkeypatch.setenv("BULKOPS_DAGSTER_GRAPHQL_URL", deployment.url)
    rows = 3 * BATCH
    path = applicants_csv(tmp_path / "same.csv", rows, late_from=2 * BATCH + 1)
    copy = tmp_path / "copy-of-same.csv"
    copy.write_bytes(path.read_bytes())
    options = ImportConfig(batch_size=BATCH)
    with deployment.instance() as instance:
        with job_row_locked(acct) as lock:
            first = start_import(path, "applications", acct.slug, options, database_url=deployment.store_url)
            try:
                wait_for(lock.waiters, "the first import to wait on the locked job")
                second = start_import(copy, "applications", acct.slug, options, database_url=deployment.store_url)
                # the run queue's per-content limit (bulkops/sha256) holds the second one
                wait_for(
                    lambda: instance.get_run_by_id(second).status == dg.DagsterRunStatus.QUEUED,
                    "the second run to be queued",
                )
                # and keeps holding it, dequeue tick after tick, while the first one runs
                window = time.monotonic() + 5
                while time.monotonic() < window:
                    assert instance.get_run_by_id(second).status == dg.DagsterRunStatus.QUEUED
                    assert instance.get_run_by_id(first).status == dg.DagsterRunStatus.STARTED
                    time.sleep(0.2)
            finally:
                lock.release()
        for run_id in (first, second):
            assert runs.wait_for_run(run_id, instance=instance, timeout=WAIT_S) == dg.DagsterRunStatus.SUCCESS
        a, b = instance.get_run_record_by_id(first), instance.get_run_record_by_id(second)
        assert b.start_time >= a.end_time
    # the second found the content imported: nothing twice
    imported = [r for r in history(acct) if r.status == "completed"]
    assert len(imported) == 1 and completed(imported[0]) == (rows, rows, rows, 0, 0)
    assert records(acct, imported[0].id) == exactly(rows)


def test_the_default_webserver_is_used_only_when_it_serves_the_same_instance(
    deployment: Deployment, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runs, "DEFAULT_GRAPHQL_URL", deployment.url)
    monkeypatch.delenv("BULKOPS_DAGSTER_GRAPHQL_URL", raising=False)
    assert runs.webserver(deployment.home) == deployment.url
    other = tmp_path / "other"
    other.mkdir()
    (other / "dagster.yaml").write_text((deployment.home / "dagster.yaml").read_text())
    assert runs.webserver(other) is None
