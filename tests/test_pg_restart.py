"""PostgreSQL restarted under a running import and a running bulk job: the step's retry policy
(pipelines/retries.py) rides it out and the run completes with exact counts.

Each test runs on a private server of its own (tests/pg_cluster.py), never the shared one. The run
is stopped at a known batch by a row the test holds `FOR UPDATE` (tests/faults.py); then the test
restarts the server with `pg_ctl restart -m fast`, which terminates every session (the run's and
the lock's) and returns once the server accepts connections again.
"""

from __future__ import annotations

import threading
from pathlib import Path

import dagster as dg
import pytest

from connectors.store import RecordStore, schema
from pipelines.bulk import launch, service
from pipelines.definitions import defs
from pipelines.imports import dropzone
from pipelines.imports.assets import ImportConfig, _build_imported_file, import_files, imported_file
from resources import RecordStoreResource
from tests.bulk.conftest import Seeder
from tests.faults import (
    BATCH,
    applicants_csv,
    completed,
    exactly,
    history,
    job_row_locked,
    new_account,
    records,
    row_locked,
    wait_for,
)
from tests.pg_cluster import Cluster

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

SHUTDOWN = "terminating connection due to administrator command"


def _restart_when_waiting(cluster: Cluster, waiters, before=None) -> tuple[threading.Thread, list[BaseException]]:
    """A thread that restarts CLUSTER once the run waits on the test's lock (after BEFORE, if given)."""
    errors: list[BaseException] = []

    def act() -> None:
        try:
            wait_for(waiters, "the run to wait on the held row")
            if before is not None:
                before()
            cluster.restart()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=act)
    thread.start()
    return thread, errors


def _retries(events: list[dg.DagsterEvent]) -> list[str]:
    return [str(e.event_specific_data.error) for e in events if e.event_type_value == "STEP_UP_FOR_RETRY"]


def test_an_import_rides_out_a_postgresql_restart_and_completes_exactly(
    pg_cluster: Cluster, instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    url = pg_cluster.database()
    acct = new_account(url)
    rows = 1000
    path = applicants_csv(tmp_path / "restart.csv", rows, late_from=2 * BATCH + 1)
    key = dropzone.partition_key("applications", path.name, dropzone.file_sha256(path))
    instance.add_dynamic_partitions(import_files.name, [key])
    seen: list[tuple] = []

    def committed_two_batches() -> None:
        [row] = history(acct)
        seen.append((row.status, row.rows_committed))

    with job_row_locked(acct) as lock:
        thread, errors = _restart_when_waiting(pg_cluster, lock.waiters, committed_two_batches)
        try:
            # the production asset and retry policy
            result = dg.materialize(
                [imported_file],
                instance=instance,
                partition_key=key,
                resources={"record_store": RecordStoreResource(database_url=url)},
                run_config=dg.RunConfig(
                    ops={"imported_file": ImportConfig(path=str(path), account=acct.slug, batch_size=BATCH)}
                ),
                raise_on_error=False,
            )
        finally:
            thread.join()
    assert errors == []
    assert seen == [("processing", 2 * BATCH)]
    assert result.success
    retries = _retries(result.all_events)
    assert retries and SHUTDOWN in retries[0], retries
    [done] = history(acct)
    assert completed(done) == (rows, rows, rows, 0, 0)
    assert done.dagster_run_id == result.run_id
    assert records(acct, done.id) == exactly(rows)
    acct.store.dispose()


def test_an_import_whose_server_stays_down_fails_saying_so_and_a_rerun_resumes(
    pg_cluster: Cluster, instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    url = pg_cluster.database()
    acct = new_account(url)
    rows = 1000
    path = applicants_csv(tmp_path / "down.csv", rows, late_from=2 * BATCH + 1)
    key = dropzone.partition_key("applications", path.name, dropzone.file_sha256(path))
    instance.add_dynamic_partitions(import_files.name, [key])
    # the production classification of faults, two attempts close together
    asset = _build_imported_file(dg.RetryPolicy(max_retries=1, delay=0.2))

    def run() -> dg.ExecuteInProcessResult:
        return dg.materialize(
            [asset],
            instance=instance,
            partition_key=key,
            resources={"record_store": RecordStoreResource(database_url=url)},
            run_config=dg.RunConfig(
                ops={"imported_file": ImportConfig(path=str(path), account=acct.slug, batch_size=BATCH)}
            ),
            raise_on_error=False,
        )

    with job_row_locked(acct) as lock:
        errors: list[BaseException] = []

        def stop() -> None:
            try:
                wait_for(lock.waiters, "the import to wait on the held job")
                pg_cluster.stop()
            except BaseException as exc:
                errors.append(exc)

        thread = threading.Thread(target=stop)
        thread.start()
        try:
            failed = run()
        finally:
            thread.join()
    assert errors == []
    assert not failed.success
    [failure] = [e for e in failed.all_events if e.event_type_value == "STEP_FAILURE"]
    message = failure.event_specific_data.error.message
    where = f"PostgreSQL 127.0.0.1:{pg_cluster.port}/bulkops"
    assert f"import of down.csv failed after 2 attempts: cannot reach the record store at {where}" in message
    assert "its committed batches are kept and a re-run of the partition resumes" in message
    assert "Exceeded max_retries" not in message

    pg_cluster.start()
    again = run()

    assert again.success
    [done] = history(acct)
    assert completed(done) == (rows, rows, rows, 0, 0)
    assert records(acct, done.id) == exactly(rows)
    acct.store.dispose()


def test_a_bulk_job_rides_out_a_postgresql_restart_and_completes_exactly(
    pg_cluster: Cluster, instance: dg.DagsterInstance
) -> None:
    url = pg_cluster.database()
    store = RecordStore(url)
    account = store.ensure_account("restart")
    seed = Seeder(store, account)
    ids = seed.applications(10)
    job_id = service.create_job(
        store,
        account,
        created_by=None,
        entity_type="applications",
        operation="status_update",
        entity_ids=ids,
        params={"status": "archived"},
    )["id"]
    # the 7th record held: the run commits three batches of two, then waits on it
    with row_locked(store, schema.applications, ids[6]) as lock:
        thread, errors = _restart_when_waiting(pg_cluster, lock.waiters)
        try:
            result = defs.resolve_job_def("bulk_job").execute_in_process(
                run_config=launch.run_config_for(job_id, url, 2), instance=instance, raise_on_error=False
            )
        finally:
            thread.join()
    assert errors == []
    assert result.success
    retries = _retries(result.all_events)
    assert retries and SHUTDOWN in retries[0], retries
    job = service.get_job(store, account, job_id)
    assert (job["status"], job["processed_count"], job["failed_count"]) == ("completed", 10, 0)
    assert sorted(a.entity_id for a in seed.audit(job_id)) == sorted(ids)
    assert [i.status for i in seed.items(job_id)] == ["succeeded"] * 10
    rows = seed.rows(schema.applications, ids)
    assert {rows[i].status for i in ids} == {"archived"}
    store.dispose()


def test_a_bulk_job_whose_server_stays_down_fails_saying_so_and_a_rerun_resumes(
    pg_cluster: Cluster, instance: dg.DagsterInstance
) -> None:
    url = pg_cluster.database()
    store = RecordStore(url)
    account = store.ensure_account("down")
    seed = Seeder(store, account)
    ids = seed.applications(10)
    job_id = service.create_job(
        store,
        account,
        created_by=None,
        entity_type="applications",
        operation="status_update",
        entity_ids=ids,
        params={"status": "archived"},
    )["id"]
    job_def = defs.resolve_job_def("bulk_job")

    def run() -> dg.ExecuteInProcessResult:
        return job_def.execute_in_process(
            run_config=launch.run_config_for(job_id, url, 2), instance=instance, raise_on_error=False
        )

    with row_locked(store, schema.applications, ids[6]) as lock:
        errors: list[BaseException] = []

        def stop() -> None:
            try:
                wait_for(lock.waiters, "the run to wait on the held record")
                pg_cluster.stop()
            except BaseException as exc:
                errors.append(exc)

        thread = threading.Thread(target=stop)
        thread.start()
        try:
            # the production retry policy: four attempts over about 14 s
            failed = run()
        finally:
            thread.join()
    assert errors == []
    assert not failed.success
    assert len(_retries(failed.all_events)) == 3
    [failure] = [e for e in failed.all_events if e.event_type_value == "STEP_FAILURE"]
    message = failure.event_specific_data.error.message
    where = f"PostgreSQL 127.0.0.1:{pg_cluster.port}/bulkops"
    assert f"bulk job {job_id} failed after 4 attempts: cannot reach the record store at {where}" in message
    assert "Exceeded max_retries" not in message

    pg_cluster.start()
    store.dispose()
    half = service.get_job(store, account, job_id)
    assert (half["status"], half["processed_count"]) == ("processing", 6)
    again = run()

    assert again.success
    job = service.get_job(store, account, job_id)
    assert (job["status"], job["processed_count"], job["failed_count"]) == ("completed", 10, 0)
    assert sorted(a.entity_id for a in seed.audit(job_id)) == sorted(ids)
    store.dispose()
