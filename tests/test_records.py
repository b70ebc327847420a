"""The record assets: imports, their rollbacks and bulk jobs report what they changed on declared assets only."""

from __future__ import annotations

import uuid
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from connectors.store import RecordStore, schema
from pipelines.bulk import launch
from pipelines.definitions import defs
from pipelines.imports.launch import launch_import
from tests.bulk.conftest import archive_job

CSV = "Application ID,First Name,Last Name,Email,Job Code,Job Title\n" + "".join(
    f"REC-{i},First{i},Last{i},rec{i}@example.com,ENG-1,Engineer\n" for i in range(4)
)


@pytest.fixture
def store_url(sqlite_url: str) -> str:
    # the events are the same whatever the backend; the writes are tested on both elsewhere
    return sqlite_url


def asset_events(instance: dg.DagsterInstance, run_id: str) -> list[tuple[str, str, dict]]:
    """(event type, asset key, metadata) of every asset event the run logged."""
    out = []
    for record in instance.all_logs(run_id):
        event = record.dagster_event
        if event is None:
            continue
        if event.event_type_value == "ASSET_MATERIALIZATION":
            data = event.step_materialization_data.materialization
        elif event.event_type_value == "ASSET_OBSERVATION":
            data = event.asset_observation_data.asset_observation
        else:
            continue
        metadata = {k: getattr(v, "value", v) for k, v in data.metadata.items()}
        out.append((event.event_type_value, data.asset_key.to_user_string(), metadata))
    return out


def record_counts(events: list[tuple[str, str, dict]], *names: str) -> dict[str, dict]:
    return {
        key: {n: metadata[n] for n in names if n in metadata}
        for kind, key, metadata in events
        if kind == "ASSET_MATERIALIZATION" and key.startswith("bulkops/") and key != "bulkops/bulk_jobs"
    }


def test_imports_rollbacks_and_bulk_jobs_report_changes_on_declared_assets_only(
    store_url: str, instance: dg.DagsterInstance, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BULKOPS_DATABASE_URL", store_url)
    monkeypatch.setenv("BULKOPS_VAR_DIR", str(tmp_path / "var"))
    slug = f"t-{uuid.uuid4().hex[:10]}"
    store = RecordStore(store_url)
    account = store.ensure_account(slug)
    path = tmp_path / "records.csv"
    path.write_text(CSV)
    declared = {s.key.to_user_string() for s in defs.resolve_all_asset_specs()}

    import_run, imported = launch_import(path, "applications", slug, instance=instance)
    with store.engine.connect() as conn:
        ids = conn.scalars(sa.select(schema.applications.c.id).where(schema.applications.c.account_id == account)).all()
    job_id = archive_job(store, account, ids)
    bulk = defs.resolve_job_def("bulk_job").execute_in_process(
        run_config=launch.run_config_for(job_id, store_url, 2), instance=instance
    )
    rollback = defs.resolve_job_def("rollback_import_job").execute_in_process(
        run_config={
            "ops": {
                "rollback_import_op": {"config": {"import_id": str(imported.import_id), "account": slug, "force": True}}
            }
        },
        instance=instance,
    )
    store.dispose()

    assert imported is not None and bulk.success and rollback.success
    events = {run: asset_events(instance, run) for run in (import_run, bulk.run_id, rollback.run_id)}
    assert {key for run in events.values() for _, key, _ in run} <= declared
    # progress: observations of the import's partition and of the bulk_jobs table
    assert {(k, key) for k, key, _ in events[import_run] if k == "ASSET_OBSERVATION"} == {
        ("ASSET_OBSERVATION", "imported_file")
    }
    assert {(k, key) for k, key, _ in events[bulk.run_id] if k == "ASSET_OBSERVATION"} == {
        ("ASSET_OBSERVATION", "bulkops/bulk_jobs")
    }
    # the records each one changed
    assert record_counts(events[import_run], "created", "updated") == {
        "bulkops/applications": {"created": 4, "updated": 0},
        "bulkops/candidates": {"created": 4},
        "bulkops/jobs": {"created": 1},
    }
    assert record_counts(events[bulk.run_id], "operation", "succeeded") == {
        "bulkops/applications": {"operation": "status_update", "succeeded": 4}
    }
    assert record_counts(events[rollback.run_id], "deleted") == {
        "bulkops/applications": {"deleted": 4},
        "bulkops/candidates": {"deleted": 4},
        "bulkops/jobs": {"deleted": 1},
    }


def test_a_dry_run_import_reports_no_change_to_the_records(
    store_url: str, instance: dg.DagsterInstance, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipelines.imports.assets import ImportConfig

    monkeypatch.setenv("BULKOPS_DATABASE_URL", store_url)
    monkeypatch.setenv("BULKOPS_VAR_DIR", str(tmp_path / "var"))
    slug = f"t-{uuid.uuid4().hex[:10]}"
    RecordStore(store_url).ensure_account(slug)
    path = tmp_path / "dry.csv"
    path.write_text(CSV)

    run_id, result = launch_import(path, "applications", slug, ImportConfig(dry_run=True), instance=instance)

    assert result is not None and result.dry_run
    assert record_counts(asset_events(instance, run_id), "created") == {}
