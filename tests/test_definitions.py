from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest
import yaml
from dagster._config import process_config
from dagster._core.instance.config import dagster_instance_config_schema

from pipelines.definitions import defs

ROOT = Path(__file__).resolve().parents[1]


def test_the_code_location_loads_as_dagster_loads_it() -> None:
    # `dagster dev -w workspace.yaml` autodiscovers the module: exactly one Definitions at module scope
    import importlib

    from dagster._core.workspace.autodiscovery import loadable_targets_from_loaded_module

    targets = loadable_targets_from_loaded_module(importlib.import_module("pipelines.definitions"))
    assert [t.attribute for t in targets] == ["defs"]


def test_definitions_load_with_the_record_store_resource() -> None:
    repo = defs.get_repository_def()
    assert "record_store" in defs.resources
    assert repo.get_all_jobs() is not None


def test_every_asset_job_sensor_and_schedule_is_described() -> None:
    repo = defs.get_repository_def()
    undescribed = [spec.key.to_user_string() for spec in defs.resolve_all_asset_specs() if not spec.description]
    undescribed += [j.name for j in repo.get_all_jobs() if not j.name.startswith("__") and not j.description]
    undescribed += [s.name for s in repo.sensor_defs if not s.description]
    undescribed += [s.name for s in repo.schedule_defs if not s.description]
    assert undescribed == []
    ungrouped = [spec.key.to_user_string() for spec in defs.resolve_all_asset_specs() if spec.group_name == "default"]
    assert ungrouped == []


@pytest.mark.parametrize("config", ["pipelines/dagster.local.yaml", "deploy/dagster.yaml"])
def test_instance_configs_are_valid_for_the_installed_dagster(config: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("DAGSTER_PG_HOST", "DAGSTER_PG_USER", "DAGSTER_PG_PASSWORD", "DAGSTER_PG_DB"):
        monkeypatch.setenv(var, "x")
    result = process_config(dagster_instance_config_schema(), yaml.safe_load((ROOT / config).read_text()))
    assert result.success, [e.message for e in result.errors or []]


def test_workspace_points_at_the_code_location() -> None:
    workspace = yaml.safe_load((ROOT / "workspace.yaml").read_text())
    assert workspace["load_from"] == [
        {"python_module": {"module_name": "pipelines.definitions", "location_name": "bulkops"}}
    ]
    assert isinstance(defs, dg.Definitions)
