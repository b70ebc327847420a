"""The `bulkops` code location as Dagster loads it: names, descriptions, groups and instance config."""

from __future__ import annotations

import importlib
import shutil
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa
import yaml

from connectors.store import RecordStore, make_engine, migrate, registry, schema
from pipelines.definitions import defs
from pipelines.imports import dropzone

ROOT = Path(__file__).resolve().parents[1]

# a rename breaks launch configs, run history and anything that selects by key: change these on purpose only
ASSET_KEYS = [
    "bulk_operations_stats",
    "bulkops/applications",
    "bulkops/bulk_jobs",
    "bulkops/candidates",
    "bulkops/contracts",
    "bulkops/jobs",
    "documents/document_skills",
    "exports/applications",
    "exports/candidates",
    "exports/contracts",
    "exports/jobs",
    "imported_file",
]
# export_weekly_review (and its schedule): the preset in presets/exports/
JOB_NAMES = [
    "bulk_job",
    "bulk_operation_job",
    "bulk_operations_stats_job",
    "celery_sharded_bulk_job",
    "celery_sharded_import_job",
    "document_import_job",
    "document_skills_job",
    "export_job",
    "export_weekly_review",
    "import_job",
    "import_new_file_job",
    "record_store_checks_job",
    "rollback_import_job",
    "sharded_bulk_job",
    "sharded_import_job",
    "shared_import_job",
]
SENSOR_NAMES = [
    "alert_delivery_sensor",
    "applications_dropzone_sensor",
    "bulk_job_canceled_sensor",
    "bulk_job_failure_sensor",
    "candidates_dropzone_sensor",
    "contracts_dropzone_sensor",
    "dead_run_sensor",
    "expired_previews_sensor",
    "import_canceled_sensor",
    "import_failure_sensor",
    "job_descriptions_dropzone_sensor",
    "jobs_dropzone_sensor",
    "outbox_email_sensor",
    "resumes_dropzone_sensor",
    "run_failure_alert_sensor",
    "shared_import_canceled_sensor",
]
SCHEDULE_NAMES = ["bulk_operations_stats_schedule", "export_weekly_review_schedule", "record_store_checks_schedule"]
# the UI's groups: one per capability, plus the record tables
GROUPS = {"imports", "documents", "bulk", "exports", "syncs", "monitoring", "records"}
# config fields that name the existing thing a run works on: no default could be right
REQUIRED_CONFIG = {
    ("BulkJobConfig", "bulk_job_id"),
    ("ShardedBulkJobConfig", "bulk_job_id"),
    ("RollbackImportConfig", "import_id"),
}
RESOURCE_KEYS = ["record_store"]
GROUP_TAG = "bulkops/group"


def _jobs() -> list[dg.JobDefinition]:
    # __ASSET_JOB is dagster's implicit job of all assets, not one of ours
    return [j for j in defs.resolve_all_job_defs() if not j.name.startswith("__")]


def test_the_module_holds_one_definitions_object_and_it_is_loadable() -> None:
    # `dagster dev -w workspace.yaml` refuses a module with more than one Definitions at module scope
    module = importlib.import_module("pipelines.definitions")
    assert [name for name, value in vars(module).items() if isinstance(value, dg.Definitions)] == ["defs"]
    dg.Definitions.validate_loadable(defs)


def test_workspace_points_at_the_code_location() -> None:
    workspace = yaml.safe_load((ROOT / "workspace.yaml").read_text())
    expected = [{"python_module": {"module_name": "pipelines.definitions", "location_name": "bulkops"}}]
    assert workspace["load_from"] == expected


def test_asset_keys_job_sensor_and_schedule_names_are_the_known_ones() -> None:
    repo = defs.get_repository_def()
    assert sorted(spec.key.to_user_string() for spec in defs.resolve_all_asset_specs()) == ASSET_KEYS
    assert sorted(j.name for j in _jobs()) == JOB_NAMES
    assert sorted(s.name for s in repo.sensor_defs) == SENSOR_NAMES
    assert sorted(s.name for s in repo.schedule_defs) == SCHEDULE_NAMES
    assert sorted(defs.resources or {}) == RESOURCE_KEYS


def test_every_asset_check_job_sensor_and_schedule_is_described_and_grouped() -> None:
    repo = defs.get_repository_def()
    specs = defs.resolve_all_asset_specs()
    checks = [c for a in defs.assets or [] if isinstance(a, dg.AssetsDefinition) for c in a.check_specs]
    undescribed = [f"asset {s.key.to_user_string()}" for s in specs if not (s.description or "").strip()]
    undescribed += [f"asset check {c.key.name}" for c in checks if not (c.description or "").strip()]
    undescribed += [f"job {j.name}" for j in _jobs() if not (j.description or "").strip()]
    undescribed += [f"sensor {s.name}" for s in repo.sensor_defs if not (s.description or "").strip()]
    undescribed += [f"schedule {s.name}" for s in repo.schedule_defs if not (s.description or "").strip()]
    ungrouped = [f"asset {s.key.to_user_string()}" for s in specs if s.group_name not in GROUPS]
    # jobs, sensors and schedules have no group in Dagster: a tag names the assets' group they belong to
    groups = {s.group_name for s in specs} & GROUPS
    ungrouped += [f"job {j.name}" for j in _jobs() if j.tags.get(GROUP_TAG) not in groups]
    ungrouped += [f"sensor {s.name}" for s in repo.sensor_defs if s.tags.get(GROUP_TAG) not in groups]
    ungrouped += [f"schedule {s.name}" for s in repo.schedule_defs if s.tags.get(GROUP_TAG) not in groups]
    assert undescribed + ungrouped == []
    # the lists above are not empty by accident
    assert specs and checks and _jobs() and repo.sensor_defs and repo.schedule_defs
    # every asset check too (those declared on their own, such as the record store's)
    standalone = [spec for c in defs.asset_checks or [] for spec in c.check_specs]
    assert standalone and [s.name for s in standalone if not (s.description or "").strip()] == []


def _config_classes() -> list[type[dg.Config]]:
    def walk(cls: type) -> list[type]:
        return [c for sub in cls.__subclasses__() for c in (sub, *walk(sub))]

    return [c for c in walk(dg.Config) if c.__module__.startswith(("pipelines.", "resources."))]


def test_every_config_field_is_described_and_defaulted() -> None:
    classes = _config_classes()
    fields = [(c.__name__, name, f) for c in classes for name, f in c.model_fields.items()]
    resource = type(defs.resources["record_store"])
    fields += [(resource.__name__, name, f) for name, f in resource.model_fields.items()]
    assert [f"{c}.{n}" for c, n, f in fields if not (f.description or "").strip()] == []
    assert [f"{c}.{n}" for c, n, f in fields if f.is_required() and (c, n) not in REQUIRED_CONFIG] == []
    assert {"ImportConfig", "BulkJobConfig", "StatsConfig"} <= {c.__name__ for c in classes}


def test_the_sensors_and_schedules_run_from_the_start() -> None:
    repo = defs.get_repository_def()
    stopped = [s.name for s in repo.sensor_defs if s.default_status != dg.DefaultSensorStatus.RUNNING]
    stopped += [s.name for s in repo.schedule_defs if s.default_status != dg.DefaultScheduleStatus.RUNNING]
    assert stopped == []


def test_the_record_store_resource_reads_its_url_at_run_time(monkeypatch, tmp_path: Path) -> None:
    # the code location is imported once by `dagster dev`: settings frozen then would outlive a changed environment
    monkeypatch.setenv("BULKOPS_DATABASE_URL", f"sqlite:///{tmp_path / 'later.db'}")
    resource = defs.resources["record_store"]
    assert resource.url == f"sqlite:///{tmp_path / 'later.db'}"


def test_the_local_instance_config_loads_with_its_settings(tmp_path: Path) -> None:
    # deploy/dagster.yaml runs for real against PostgreSQL in test_instance_postgres.py
    shutil.copy(ROOT / "pipelines" / "dagster.local.yaml", tmp_path / "dagster.yaml")
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        assert instance.run_retries_enabled and instance.run_retries_max_retries == 2
        assert instance.get_settings("telemetry") == {"enabled": False}
        assert instance.get_settings("concurrency")["runs"]["max_concurrent_runs"] == 4
        per_file, per_sync = instance.get_settings("concurrency")["runs"]["tag_concurrency_limits"]
        assert per_file == {"key": "bulkops/sha256", "value": {"applyLimitPerUniqueValue": True}, "limit": 1}
        assert per_sync == {"key": "bulkops/sync", "value": {"applyLimitPerUniqueValue": True}, "limit": 1}
        assert instance.run_monitoring_enabled
        assert instance.run_coordinator.dequeue_interval_seconds == 1


def test_each_entity_of_the_registry_has_its_record_asset_with_the_tables_columns() -> None:
    specs = {s.key: s for s in defs.resolve_all_asset_specs()}
    for entity in registry.ENTITIES.values():
        spec = specs[dg.AssetKey(["bulkops", entity.name])]
        assert spec.group_name == "records" and spec.kinds == {"sql"}
        assert [d.asset_key for d in spec.deps] == [dg.AssetKey("imported_file")]
        assert spec.metadata["dagster/table_name"] == entity.table.name
        columns = {c.name: c for c in spec.metadata["dagster/column_schema"].columns}
        assert list(columns) == [c.name for c in entity.table.c]
        assert all("imported" in (columns[f].description or "") for f in entity.fields if f in columns)
        assert columns["id"].constraints.nullable is False
    # imports write records: the import's asset is upstream of every record asset
    graph = defs.resolve_asset_graph()
    assert graph.get(dg.AssetKey("imported_file")).child_keys >= {
        dg.AssetKey(["bulkops", name]) for name in registry.ENTITY_NAMES
    }


def test_a_run_uses_the_record_store_and_account_set_after_the_code_location_was_imported(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    # `defs` was imported with this module, before these variables were set, as `dagster dev` imports it once
    url = f"sqlite:///{tmp_path / 'later.db'}"
    engine = make_engine(url)
    migrate.upgrade(engine)
    engine.dispose()
    RecordStore(url).ensure_account("later")
    monkeypatch.setenv("BULKOPS_DATABASE_URL", url)
    monkeypatch.setenv("BULKOPS_ACCOUNT", "later")
    monkeypatch.setenv("BULKOPS_VAR_DIR", str(tmp_path / "var"))
    path = tmp_path / "late.csv"
    path.write_text("Email,First Name\nlate@example.com,Late\n")
    key = dropzone.partition_key("candidates", path.name, dropzone.file_sha256(path))
    instance.add_dynamic_partitions("import_files", [key])

    result = defs.resolve_job_def("import_job").execute_in_process(
        run_config={"ops": {"imported_file": {"config": {"path": str(path)}}}}, instance=instance, partition_key=key
    )

    assert result.success
    store = RecordStore(url)
    with store.engine.connect() as conn:
        emails = conn.scalars(
            sa.select(schema.users.c.email).where(schema.users.c.account_id == store.account_id("later"))
        ).all()
    store.dispose()
    assert emails == ["late@example.com"]
