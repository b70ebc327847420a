"""A connection as a Dagster asset, job and schedule: history as metadata, secrets never logged."""

from __future__ import annotations

import dagster as dg
import pytest
import sqlalchemy as sa

from connectors.store import schema
from pipelines.syncs.assets import SYNC_TAG, load_definitions, sync_asset
from pipelines.syncs.config import load_connection
from resources import RecordStoreResource
from tests.syncs.conftest import Source, write_connection
from tests.syncs.test_sql_sync import store_slug

# real databases, Dagster runs and local servers: each test takes seconds
pytestmark = pytest.mark.slow


def test_each_connection_is_an_asset_with_a_schedule_and_its_runs_are_history(
    store, store_url, account, pg_source, tmp_path, instance, monkeypatch
) -> None:
    secret = "s3cr3t-pass-word"
    # the server trusts local connections: the password is carried, never checked
    url = sa.make_url(pg_source.url).set(password=secret).render_as_string(hide_password=False)
    monkeypatch.setenv("HR_DB_URL", url)
    pg_source.add(30)
    write_connection(tmp_path / "syncs", "hr", store_slug(store, account), "HR_DB_URL")
    defs = dg.Definitions.merge(
        load_definitions(tmp_path / "syncs"),
        dg.Definitions(resources={"record_store": RecordStoreResource(database_url=store_url)}),
    )
    assert defs.resolve_job_def("resolve_sync_conflict_job").description
    job = defs.resolve_job_def("sync_hr")
    assert job.tags[SYNC_TAG] == "hr"
    schedule = defs.resolve_schedule_def("sync_hr_schedule")
    assert schedule.cron_schedule == "*/15 * * * *"
    assert schedule.tags["bulkops/group"] == "syncs" and schedule.description
    assert defs.resolve_sensor_def("sync_failure_sensor").description
    asset = defs.resolve_assets_def(dg.AssetKey(["syncs", "hr"]))
    assert asset.group_names_by_key[dg.AssetKey(["syncs", "hr"])] == "syncs"

    result = job.execute_in_process(instance=instance)
    assert result.success
    mat = result.asset_materializations_for_node("syncs__hr")[0]
    assert mat.metadata["created"].value == 30 and mat.metadata["status"].value == "completed"
    with store.engine.connect() as c:
        row = c.execute(sa.select(schema.sync_runs).where(schema.sync_runs.c.account_id == account)).one()
    assert (row.status, row.records_read, row.created, row.dagster_run_id) == ("completed", 30, 30, result.run_id)

    # a source that refuses (its table is gone): the run fails at once, and the secret is nowhere
    with pg_source.engine.begin() as c:
        c.exec_driver_sql("ALTER TABLE hr_applications RENAME TO hr_old")
    failed = job.execute_in_process(instance=instance, raise_on_error=False)
    assert not failed.success
    assert "no table 'hr_applications'" in str(failed.failure_data_for_node("syncs__hr").error)
    logged = " ".join(
        str(e.message) + str(getattr(e, "event_specific_data", ""))
        for r in (result, failed)
        for e in instance.all_logs(r.run_id)
    )
    assert secret not in logged
    with store.engine.connect() as c:
        rows = c.execute(sa.select(schema.sync_runs).where(schema.sync_runs.c.account_id == account)).all()
    assert all(secret not in str(tuple(r)) for r in rows)


def test_a_sync_run_in_which_every_record_failed_fails_its_dagster_run_and_the_next_run_reads_them_again(
    store, store_url, account, tmp_path, instance, monkeypatch
) -> None:
    source = Source(f"sqlite:///{tmp_path / 'hr.db'}")
    source.add(3)
    with source.engine.begin() as c:
        c.execute(sa.text("UPDATE hr_applications SET email = 'not-an-email'"))
    monkeypatch.setenv("HR_DB_URL", source.url)
    write_connection(tmp_path / "syncs", "hr", store_slug(store, account), "HR_DB_URL")
    defs = dg.Definitions.merge(
        load_definitions(tmp_path / "syncs"),
        dg.Definitions(resources={"record_store": RecordStoreResource(database_url=store_url)}),
    )
    job = defs.resolve_job_def("sync_hr")
    try:
        failed = job.execute_in_process(instance=instance, raise_on_error=False)
        assert not failed.success
        assert instance.get_run_by_id(failed.run_id).status == dg.DagsterRunStatus.FAILURE
        error = failed.failure_data_for_node("syncs__hr").error
        assert "sync hr failed: all 3 records failed: email: " in str(error.message), error.message
        assert "(3)" in error.message
        # no step retry re-read the same bad records
        retried = instance.get_records_for_run(failed.run_id, of_type=dg.DagsterEventType.STEP_UP_FOR_RETRY).records
        assert retried == []
        with store.engine.connect() as c:
            run = c.execute(sa.select(schema.sync_runs).where(schema.sync_runs.c.dagster_run_id == failed.run_id)).one()
        assert run.status == "failed" and run.error_message.startswith("all 3 records failed: email: ")

        # fixed at the source: the next run reads them again and succeeds
        with source.engine.begin() as c:
            c.execute(sa.text("UPDATE hr_applications SET email = 'p' || id || '@example.com'"))
        again = job.execute_in_process(instance=instance)
        assert instance.get_run_by_id(again.run_id).status == dg.DagsterRunStatus.SUCCESS
        mat = again.asset_materializations_for_node("syncs__hr")[0]
        assert (mat.metadata["created"].value, mat.metadata["status"].value) == (3, "completed")
    finally:
        source.dispose()


def test_a_source_down_through_every_attempt_fails_the_run_saying_what_after_how_many_attempts_and_why(
    store, store_url, account, tmp_path, instance, monkeypatch
) -> None:
    # nothing listens on port 1: every attempt is refused, a transient fault that persists
    monkeypatch.setenv("HR_DB_URL", "postgresql+psycopg://postgres@127.0.0.1:1/hr")
    connection = load_connection(write_connection(tmp_path / "syncs", "hr", store_slug(store, account), "HR_DB_URL"))
    asset = sync_asset(connection, retry_policy=dg.RetryPolicy(max_retries=1, delay=0.1))

    failed = dg.materialize(
        [asset],
        instance=instance,
        resources={"record_store": RecordStoreResource(database_url=store_url)},
        raise_on_error=False,
    )

    assert instance.get_run_by_id(failed.run_id).status == dg.DagsterRunStatus.FAILURE
    retried = instance.get_records_for_run(failed.run_id, of_type=dg.DagsterEventType.STEP_UP_FOR_RETRY).records
    assert len(retried) == 1
    message = failed.failure_data_for_node("syncs__hr").error.message
    assert "sync hr failed after 2 attempts: hr: cannot reach the database" in message, message
    assert "the connection's next run resumes after them" in message
    assert "Exceeded max_retries" not in message
