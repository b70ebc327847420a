"""The asset, `bulkops stats` and the API's stats-get give the same numbers, from the same function."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from pathlib import Path

import dagster as dg
import httpx
import pytest
from click.testing import CliRunner

from connectors.store import RecordStore
from pipelines.cli import main
from pipelines.definitions import defs
from pipelines.monitoring.assets import bulk_operations_stats
from resources import RecordStoreResource
from tests.monitoring.helpers import add_bulk_job, add_import, slug

# real runs, a real API server and files: each takes seconds
pytestmark = pytest.mark.slow


def _seed(store: RecordStore, account: uuid.UUID) -> None:
    for s in (2.0, 4.0, 6.0):
        add_import(store, account, seconds=s, created=10)
    add_import(store, account, status="failed", seconds=8.0, created=0, errors=3)
    add_import(store, account, status="processing", seconds=None, created=4)
    add_bulk_job(store, account, seconds=30.0, processed=100, failed=1)
    add_bulk_job(store, account, started=timedelta(days=3), seconds=10.0, processed=50)


def _materialize_stats(store: RecordStore, instance: dg.DagsterInstance, **config: object) -> dict:
    """Materialize bulk_operations_stats over STORE with CONFIG; its metadata."""
    result = dg.materialize(
        [bulk_operations_stats],
        instance=instance,
        resources={
            "record_store": RecordStoreResource(database_url=store.engine.url.render_as_string(hide_password=False))
        },
        run_config={"ops": {"bulk_operations_stats": {"config": config}}} if config else None,
    )
    assert result.success
    [mat] = result.asset_materializations_for_node("bulk_operations_stats")
    return mat.metadata


def test_the_asset_plots_each_number_and_shows_a_summary_table(
    own_store: RecordStore, instance: dg.DagsterInstance
) -> None:
    store = own_store
    account = store.ensure_account("acme")
    _seed(store, account)
    md = _materialize_stats(store, instance)
    me = slug(store, account)
    assert md[f"import/{me}/succeeded"] == dg.MetadataValue.int(3)
    assert md[f"import/{me}/failed"] == dg.MetadataValue.int(1)
    assert md[f"import/{me}/in_progress"] == dg.MetadataValue.int(1)
    assert md[f"import/{me}/success_rate"] == dg.MetadataValue.float(0.75)
    assert md[f"import/{me}/mean_seconds"] == dg.MetadataValue.float(5.0)
    assert md[f"import/{me}/p95_seconds"] == dg.MetadataValue.float(8.0)
    assert md[f"account/{me}/records"] == dg.MetadataValue.int(30 + 3 + 4 + 100 + 50)
    assert md[f"bulk_job.status_update/{me}/records_per_day"] == dg.MetadataValue.float(round(150 / 7, 2))
    assert isinstance(md["total/succeeded"], dg.IntMetadataValue)
    by_account = md["summary_by_account"].value
    assert "| import | " + me + " | 1 | 3 | 1 | 0 | 75.0% | 5.0 s | 8.0 s |" in by_account
    # the summary is a table per operation kind (the UI shows a table inline at any size, a long
    # Markdown entry only behind a button): the kinds of every account, and `all` last
    summary = md["summary"]
    assert isinstance(summary, dg.TableMetadataValue)
    assert [c.name for c in summary.schema.columns][:3] == ["operation", "succeeded", "failed"]
    rows = {r.data["operation"]: r.data for r in summary.records}
    assert list(rows)[-1] == "all"
    assert {"import", "bulk_job.status_update"} <= set(rows)
    assert rows["import"]["succeeded"] >= 3 and rows["all"]["records"] >= 30 + 3 + 4 + 100 + 50
    assert (md["accounts"], md["accounts_plotted"]) == (dg.MetadataValue.int(1), dg.MetadataValue.int(1))
    # the schedule refreshes it every five minutes, running from the start
    schedule = defs.get_repository_def().get_schedule_def("bulk_operations_stats_schedule")
    assert schedule.cron_schedule == "*/5 * * * *"
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING


def test_only_the_busiest_accounts_get_numbers_of_their_own(
    own_store: RecordStore, instance: dg.DagsterInstance
) -> None:
    # a deployment with many accounts would write tens of thousands of entries every 5 minutes
    store = own_store
    records = {"busy": 50, "quiet": 5, "middling": 20}
    accounts = {name: store.ensure_account(name) for name in records}
    for name, created in records.items():
        add_import(store, accounts[name], created=created)
    slugs = {name: slug(store, account) for name, account in accounts.items()}
    md = _materialize_stats(store, instance, plotted_accounts=2)
    assert (md["accounts"], md["accounts_plotted"]) == (dg.MetadataValue.int(3), dg.MetadataValue.int(2))
    for name in ("busy", "middling"):
        assert md[f"account/{slugs[name]}/records"] == dg.MetadataValue.int(records[name])
        assert md[f"import/{slugs[name]}/succeeded"] == dg.MetadataValue.int(1)
    quiet = slugs["quiet"]
    assert not [key for key in md if key.startswith(f"account/{quiet}/") or f"/{quiet}/" in key]
    # every account is still in the table by account, the JSON and the totals
    assert f"| import | {quiet} | " in md["summary_by_account"].value
    assert quiet in {row["account"] for row in md["stats"].value["by_account"]}
    assert md["total/records"] == dg.MetadataValue.int(75)


def test_the_command_and_the_api_give_the_asset_s_numbers(
    store: RecordStore, account: uuid.UUID, cli_env: Path, base_url: str
) -> None:
    _seed(store, account)
    me = slug(store, account)
    from pipelines.api.tokens import create_token

    token = create_token(store, account, name="stats").token

    out = CliRunner().invoke(main, ["stats", "--account", me, "--since", "7d", "--json"])
    text = CliRunner().invoke(main, ["stats", "--account", me])
    answer = httpx.get(
        f"{base_url}/api/stats-get", params={"since": "7d"}, headers={"Authorization": f"Bearer {token}"}
    )
    bad = httpx.get(f"{base_url}/api/stats-get", params={"since": "soon"}, headers={"Authorization": f"Bearer {token}"})

    assert out.exit_code == 0, out.output
    cli = json.loads(out.output)
    assert answer.status_code == 200 and answer.json()["ok"] is True
    api = answer.json()["result"]
    for got in (cli, api):
        assert got["account"] == me
        [imports] = [g for g in got["by_operation"] if g["operation"] == "import"]
        assert (imports["succeeded"], imports["failed"], imports["in_progress"]) == (3, 1, 1)
        assert imports["p95_seconds"] == 8.0 and imports["success_rate"] == 0.75
        assert got["total"]["records"] == 187
    assert text.exit_code == 0 and "import" in text.output and "75.0%" in text.output
    assert bad.status_code == 422 and bad.json()["error"]["details"]["field"] == "since"
