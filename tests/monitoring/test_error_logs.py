"""A run's metadata shows its failed records with their reasons and links to all of them; the commands print them."""

from __future__ import annotations

import csv
import io
import uuid
from pathlib import Path

import dagster as dg
import pytest
from click.testing import CliRunner

from connectors.store import RecordStore
from pipelines.bulk import service
from pipelines.bulk.jobs import bulk_job
from pipelines.cli import main
from resources import RecordStoreResource
from tests.imports.helpers import file_materializations
from tests.imports.test_assets import materialize, write

BAD = "Email,First Name\nok@example.com,Ok\nnot-an-email,Bad\nalso bad,Worse\n"

# real runs, a real API server and files: each takes seconds
pytestmark = pytest.mark.slow


def test_an_imports_run_shows_its_failed_rows_and_links_to_the_csv(
    store: RecordStore, store_url: str, instance: dg.DagsterInstance, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BULKOPS_VAR_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("BULKOPS_API_URL", "http://api.example:8000")
    slug = f"t-{uuid.uuid4().hex[:10]}"
    store.ensure_account(slug)
    result = materialize(
        instance, store_url, write(tmp_path / "people.csv", BAD), account=slug, entity="candidates", error_threshold=1.0
    )
    assert result.success
    [mat] = file_materializations(result)
    md = mat.metadata
    import_id = md["import_id"].value
    table = md["failed_records (first 50)"].value
    assert [(r.data["record"].split(" ")[1], r.data["field"]) for r in table.records] == [
        ("2", "email"),
        ("3", "email"),
    ]
    assert all(r.data["reason"] for r in table.records)
    assert md["failed_records_csv"] == dg.MetadataValue.url(
        f"http://api.example:8000/api/change-sets-failed-records?id={import_id}"
    )
    assert md["failed_records_command"].value == f"bulkops imports failed {import_id}"


def test_bulkops_imports_failed_prints_the_failed_rows(
    store: RecordStore, store_url: str, instance: dg.DagsterInstance, cli_env: Path
) -> None:
    import os

    slug = os.environ["BULKOPS_ACCOUNT"]
    result = materialize(
        instance, store_url, write(cli_env / "people.csv", BAD), account=slug, entity="candidates", error_threshold=1.0
    )
    import_id = file_materializations(result)[0].metadata["import_id"].value

    out = CliRunner().invoke(main, ["imports", "failed", import_id])
    generic = CliRunner().invoke(main, ["failed", import_id])
    unknown = CliRunner().invoke(main, ["imports", "failed", str(uuid.uuid4())])

    assert out.exit_code == 0, out.output
    rows = list(csv.DictReader(io.StringIO(out.output)))
    assert [(r["_row"], r["Email"]) for r in rows] == [("2", "not-an-email"), ("3", "also bad")]
    assert generic.output == out.output
    assert unknown.exit_code != 0 and "no import, bulk job" in unknown.output


def test_a_bulk_jobs_run_shows_its_failed_records_and_the_csv_downloads(
    store: RecordStore, account: uuid.UUID, store_url: str, instance: dg.DagsterInstance, base_url: str
) -> None:
    from pipelines.api.tokens import create_token

    job = service.create_job(
        store,
        account,
        created_by=None,
        entity_type="applications",
        operation="delete",
        entity_ids=[uuid.uuid4() for _ in range(3)],
    )
    result = bulk_job.execute_in_process(
        run_config={"ops": {"apply_bulk_job": {"config": {"bulk_job_id": job["id"]}}}},
        instance=instance,
        resources={"record_store": RecordStoreResource(database_url=store_url)},
    )
    assert result.success
    md = {
        k: v
        for e in result.all_events
        if e.event_type_value == "STEP_OUTPUT"
        for k, v in e.event_specific_data.metadata.items()
    }
    table = md["failed_records (first 50)"].value
    assert [r.data["reason"] for r in table.records] == ["not found"] * 3
    assert md["failed_records_command"].value == f"bulkops bulk-jobs failed {job['id']}"

    token = create_token(store, account, name="failed").token
    answer = httpx_get(base_url, "/api/change-sets-failed-records", token, id=job["id"])
    missing = httpx_get(base_url, "/api/change-sets-failed-records", token, id=str(uuid.uuid4()))
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/csv")
    assert [r["error"] for r in csv.DictReader(io.StringIO(answer.text))] == ["not found"] * 3
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"


def httpx_get(base_url: str, path: str, token: str, **params: str):  # type: ignore[no-untyped-def]
    import httpx

    return httpx.get(f"{base_url}{path}", params=params, headers={"Authorization": f"Bearer {token}"}, timeout=60)
