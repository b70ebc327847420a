"""Runs carry the tags the UI filters by: kind, account, entity and change set, however they were launched."""

from __future__ import annotations

import uuid
from pathlib import Path

import dagster as dg
import pytest

from connectors.store import RecordStore
from pipelines.bulk import service
from pipelines.bulk.jobs import bulk_job
from resources import RecordStoreResource
from tests.imports.helpers import file_materializations
from tests.imports.test_assets import materialize, write
from tests.monitoring.helpers import slug

pytestmark = pytest.mark.slow


def test_an_import_run_is_tagged_with_its_kind_account_entity_and_import(
    store: RecordStore, store_url: str, instance: dg.DagsterInstance, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BULKOPS_VAR_DIR", str(tmp_path / "var"))
    account = f"t-{uuid.uuid4().hex[:10]}"
    store.ensure_account(account)
    result = materialize(
        instance, store_url, write(tmp_path / "p.csv", "Email\na@example.com\n"), account=account, entity="candidates"
    )
    assert result.success
    import_id = file_materializations(result)[0].metadata["import_id"].value
    tags = instance.get_run_by_id(result.run_id).tags
    assert {k: tags.get(k) for k in ("bulkops/account", "bulkops/entity", "bulkops/change_set_id")} == {
        "bulkops/account": account,
        "bulkops/entity": "candidates",
        "bulkops/change_set_id": import_id,
    }
    assert tags["bulkops/kind"] == "import"


def test_a_bulk_job_run_is_tagged_with_its_kind_account_entity_and_bulk_job(
    store: RecordStore, account: uuid.UUID, store_url: str, instance: dg.DagsterInstance
) -> None:
    job = service.create_job(
        store, account, created_by=None, entity_type="candidates", operation="delete", entity_ids=[uuid.uuid4()]
    )
    result = bulk_job.execute_in_process(
        run_config={"ops": {"apply_bulk_job": {"config": {"bulk_job_id": job["id"]}}}},
        instance=instance,
        resources={"record_store": RecordStoreResource(database_url=store_url)},
    )
    tags = instance.get_run_by_id(result.run_id).tags
    assert (tags["bulkops/kind"], tags["bulkops/account"], tags["bulkops/entity"], tags["bulkops/change_set_id"]) == (
        "bulk_job",
        slug(store, account),
        "candidates",
        job["id"],
    )
