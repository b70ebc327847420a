"""`bulkops export`: an export_job run launched into the instance, the file, and what it refuses."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import dagster as dg
import openpyxl
import pytest
from click.testing import CliRunner

from connectors.store import RecordStore
from pipelines.cli import main
from tests.exports.conftest import seed


@pytest.fixture
def cli_dataset(cli_env: Path, store_url: str):
    store = RecordStore(store_url)
    account = store.account_id(os.environ["BULKOPS_ACCOUNT"])
    other = store.ensure_account(f"t-{uuid.uuid4().hex[:10]}")
    seed(store, other, n=6)
    ds = seed(store, account, n=12)
    ds.slug = os.environ["BULKOPS_ACCOUNT"]
    yield ds
    store.dispose()


@pytest.mark.slow
def test_export_writes_the_file_through_an_export_job_run(cli_dataset, cli_env: Path) -> None:
    out = cli_env / "exports"
    result = CliRunner().invoke(
        main,
        [
            "export",
            "--entity",
            "applications",
            "--where",
            "stage=review",
            "--where",
            "applied_at>=2026-01-02",
            "--columns",
            "external_id:Ref,candidate_email:Email,job_title,source",
            "--format",
            "xlsx",
            "--out",
            str(out),
            "--name",
            "reviews",
        ],
    )
    assert result.exit_code == 0, result.output
    path = out / "reviews.xlsx"
    assert f"file: {path}" in result.output
    expected = {
        a["external_id"]
        for a in cli_dataset.apps.values()
        if a["stage"] == "review" and a["deleted_at"] is None and a["applied_at"] is not None
    }
    assert f"exported {len(expected)} rows of applications where stage is review" in result.output
    sheet = openpyxl.load_workbook(path).worksheets[0]
    assert [c.value for c in sheet[1]] == ["Ref", "Email", "job_title", "source"]
    assert {r[0].value for r in sheet.iter_rows(min_row=2)} == expected
    # the run is in the instance's history, with the export's materialization
    run_id = result.output.split("dagster run: ")[1].split()[0]
    with dg.DagsterInstance.get() as instance:
        assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.SUCCESS


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--where", "account_id=00000000-0000-0000-0000-000000000001"], "unknown field 'account_id'"),
        (["--columns", "id,account_id"], "column 'account_id': unknown field 'account_id'"),
        (["--account", "nobody-here"], "no account with slug 'nobody-here'"),
        (["--where", "applied_at>=someday"], "'someday' is not a date"),
        (["--entity", "invoices"], "unknown entity 'invoices'"),
    ],
)
def test_export_refuses_at_once_with_one_line(cli_dataset, cli_env: Path, args: list[str], message: str) -> None:
    result = CliRunner().invoke(main, ["export", "--out", str(cli_env / "exports"), *args])
    assert result.exit_code == 1
    assert result.output.startswith("error: ") and message in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not (cli_env / "exports").exists()
