"""import_new_file_job: a new file imported from the Launchpad, its partition registered by the run itself."""

from __future__ import annotations

import uuid
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from connectors.store import RecordStore, schema
from pipelines.definitions import defs
from pipelines.imports import dropzone

CSV = "Application ID,First Name,Last Name,Email,Job Code,Job Title\n" + "".join(
    f"NEW-{i},First{i},Last{i},new{i}@example.com,ENG-1,Engineer\n" for i in range(3)
)


def _run(instance, store_url, **config) -> dg.ExecuteInProcessResult:
    return defs.resolve_job_def("import_new_file_job").execute_in_process(
        run_config={
            "ops": {"import_new_file": {"config": config}},
            "resources": {"record_store": {"config": {"database_url": store_url}}},
        },
        instance=instance,
        raise_on_error=False,
    )


def _failure(result) -> str:
    return next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE").step_failure_data.error.message


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, store_url: str) -> tuple[RecordStore, uuid.UUID, str]:
    monkeypatch.setenv("BULKOPS_DATABASE_URL", store_url)
    monkeypatch.setenv("BULKOPS_VAR_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("BULKOPS_DROPZONE", str(tmp_path / "drop"))
    slug = f"t-{uuid.uuid4().hex[:10]}"
    store = RecordStore(store_url)
    yield store, store.ensure_account(slug), slug
    store.dispose()


@pytest.mark.slow
def test_a_new_file_in_the_drop_folder_is_imported_from_the_launchpad(env, store_url, instance, tmp_path) -> None:
    store, account, slug = env
    folder = dropzone.entity_dir("applications")
    folder.mkdir(parents=True)
    (folder / "fresh.csv").write_text(CSV)
    key = dropzone.partition_key("applications", "fresh.csv", dropzone.file_sha256(folder / "fresh.csv"))
    assert not instance.has_dynamic_partition("import_files", key)

    result = _run(instance, store_url, file_name="fresh.csv", entity="applications", account=slug)
    assert result.success, _failure(result)

    assert instance.has_dynamic_partition("import_files", key)
    with store.engine.connect() as conn:
        refs = conn.scalars(
            sa.select(schema.applications.c.external_id).where(schema.applications.c.account_id == account)
        ).all()
    assert sorted(refs) == ["NEW-0", "NEW-1", "NEW-2"]
    # the import is the imported_file partition's materialization, by the import_job run this run launched
    out = next(e for e in result.all_events if e.event_type_value == "STEP_OUTPUT").step_output_data.metadata
    import_run = out["import_run_id"].value
    assert (out["partition"].value, out["created"].value) == (key, 3)
    assert instance.get_run_by_id(import_run).job_name == "import_job"
    found = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey("imported_file"), asset_partitions=[key]), limit=5
    )
    assert [r.run_id for r in found.records] == [import_run]
    assert (folder / "processed").is_dir() and not (folder / "fresh.csv").exists()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("config", "message"),
    [
        pytest.param({"file_name": "missing.csv"}, "file to import not found", id="missing-in-drop-folder"),
        pytest.param({"path": "/nowhere/x.csv"}, "file to import not found: /nowhere/x.csv", id="missing-path"),
        pytest.param({}, "give path", id="neither"),
        pytest.param({"file_name": "../x.csv"}, "not a path", id="path-as-name"),
    ],
)
def test_a_file_that_is_not_there_is_refused_in_one_line(env, store_url, instance, config, message) -> None:
    _, _, slug = env
    result = _run(instance, store_url, account=slug, **config)
    assert not result.success
    assert message in _failure(result)
