"""A connection as a Dagster asset, job and schedule: history as metadata, secrets never logged."""

from __future__ import annotations

import dagster as dg
import pytest
import sqlalchemy as sa

from connectors.store import schema
from pipelines.syncs.assets import SYNC_TAG, load_definitions
from resources import RecordStoreResource
from tests.syncs.conftest import write_connection
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
