"""export_job and preset jobs in a real Dagster instance: the file, its materialization, tenancy, retention."""

from __future__ import annotations

import csv
import os
import time
from pathlib import Path

import dagster as dg
import pytest

from pipelines.exports.jobs import export_job, export_key
from pipelines.exports.presets import PresetError, load_preset, load_presets, preset_definitions
from resources import RecordStoreResource
from tests.exports.conftest import Dataset

# every test but the preset-file ones runs a Dagster job
slow = pytest.mark.slow


def _run(job: dg.JobDefinition, instance: dg.DagsterInstance, store_url: str, config: dict | None = None, **kw):
    run_config = {"ops": {"write_export": {"config": config}}} if config is not None else None
    return job.execute_in_process(
        run_config=run_config,
        instance=instance,
        resources={"record_store": RecordStoreResource(database_url=store_url)},
        raise_on_error=False,
        **kw,
    )


def _materializations(instance: dg.DagsterInstance, entity: str) -> list[dg.AssetMaterialization]:
    records = instance.fetch_materializations(export_key(entity), limit=100).records
    return [r.asset_materialization for r in records]


@slow
def test_the_launchpad_config_exports_and_records_a_materialization(
    dataset: Dataset, store_url: str, instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    result = _run(
        export_job,
        instance,
        store_url,
        {
            "account": dataset.slug,
            "entity": "applications",
            "where": ["stage in review,interview"],
            "filters": [{"field": "applied_at", "op": ">=", "value": "2026-01-03"}],
            "columns": ["external_id:Ref", "candidate_email:Email", "job_code", "tags"],
            "format": "csv",
            "out_dir": str(tmp_path / "out"),
            "name": "{entity}-{account}",
        },
    )
    assert result.success
    path = tmp_path / "out" / f"applications-{dataset.slug}.csv"
    assert result.output_for_node("write_export") == str(path)
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    expected = {
        a["external_id"]
        for a in dataset.apps.values()
        if a["deleted_at"] is None
        and a["stage"] in ("review", "interview")
        and a["applied_at"] is not None
        and a["applied_at"].day >= 3
    }
    assert {r["Ref"] for r in rows} == expected and expected
    assert list(rows[0]) == ["Ref", "Email", "job_code", "tags"]
    tags = instance.get_run_by_id(result.run_id).tags
    assert (tags["bulkops/kind"], tags["bulkops/account"], tags["bulkops/entity"]) == (
        "export",
        dataset.slug,
        "applications",
    )
    [mat] = _materializations(instance, "applications")
    meta = mat.metadata
    assert meta["path"].value == str(path)
    assert meta["dagster/row_count"].value == len(rows)
    assert meta["size_bytes"].value == path.stat().st_size
    assert meta["account"].value == dataset.slug
    assert meta["filter"].value == (
        "applications where stage is one of review, interview and applied_at on or after 2026-01-03"
    )
    preview = meta["preview"].value
    assert [c.name for c in preview.schema.columns] == ["Ref", "Email", "job_code", "tags"]
    assert {r.data["Ref"] for r in preview.records} == expected


@slow
@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"where": ["account_id=00000000-0000-0000-0000-000000000001"]}, "unknown field 'account_id'"),
        ({"columns": ["id", "account_id"]}, "column 'account_id': unknown field 'account_id'"),
        ({"account": "no-such-account"}, "no account with slug 'no-such-account'"),
        ({"entity": "invoices"}, "unknown entity 'invoices'"),
        ({"where": ["stage=review", "colour=red"]}, "unknown field 'colour' for applications"),
        ({"name": "{when}"}, "unknown field {when}"),
    ],
)
def test_a_refused_export_fails_the_run_with_one_line_and_no_file(
    dataset: Dataset, store_url: str, instance: dg.DagsterInstance, tmp_path: Path, config: dict, message: str
) -> None:
    full = {"account": dataset.slug, "out_dir": str(tmp_path / "out"), **config}
    result = _run(export_job, instance, store_url, full)
    assert not result.success
    [failure] = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert message in failure.step_failure_data.error.message
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []
    assert _materializations(instance, "applications") == []


@slow
def test_an_export_through_the_launchpad_holds_only_its_account(
    dataset: Dataset, store_url: str, instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    # the other account holds jobs with the same codes and look-alike emails
    result = _run(
        export_job,
        instance,
        store_url,
        {
            "account": dataset.slug,
            "include_deleted": True,
            "columns": ["id"],
            "out_dir": str(tmp_path),
            "format": "parquet",
        },
    )
    assert result.success
    import pyarrow.parquet as pq

    ids = set(pq.read_table(result.output_for_node("write_export")).column("id").to_pylist())
    assert ids == {str(i) for i in dataset.apps}


def _preset(folder: Path, text: str, name: str = "p.yaml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text)
    return path


@slow
def test_a_scheduled_preset_writes_dated_files_and_keeps_the_last_n(
    dataset: Dataset, store_url: str, instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    path = _preset(
        tmp_path / "presets",
        f"""
name: nightly_offers
description: Offers every night
account: {dataset.slug}
entity: applications
where: [stage=offer]
columns: [external_id, candidate_email]
format: csv
out_dir: {out}
schedule: "0 2 * * *"
keep_last: 2
""",
    )
    preset = load_preset(path)
    [job], [schedule] = preset_definitions([preset])
    assert job.name == "export_nightly_offers" and job.tags["bulkops/preset"] == "nightly_offers"
    assert schedule.name == "export_nightly_offers_schedule" and schedule.cron_schedule == "0 2 * * *"
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    # three earlier nights, oldest first
    out.mkdir()
    earlier = []
    for day in (1, 2, 3):
        p = out / f"nightly_offers-2026010{day}T020000Z.csv"
        p.write_text("old")
        os.utime(p, ns=(time.time_ns(), day * 10**9))
        earlier.append(p)
    unrelated = out / "something-else.csv"
    unrelated.write_text("kept")

    # the schedule's run request carries no config: the preset's is the job's default
    with dg.build_schedule_context(instance=instance) as context:
        [request] = list(schedule.evaluate_tick(context).run_requests or [])
    assert not request.run_config
    result = _run(job, instance, store_url, tags=request.tags)
    assert result.success
    written = Path(result.output_for_node("write_export"))
    assert written.name.startswith("nightly_offers-2026") and written.name.endswith("Z.csv")
    assert sorted(out.iterdir()) == sorted([earlier[2], written, unrelated])
    [mat] = _materializations(instance, "applications")
    assert mat.metadata["preset"].value == "nightly_offers"
    with open(written, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert {r["external_id"] for r in rows} == {
        a["external_id"] for a in dataset.apps.values() if a["stage"] == "offer" and a["deleted_at"] is None
    }


def test_the_shipped_presets_load() -> None:
    [weekly] = load_presets()
    assert weekly.job_name == "export_weekly_review" and weekly.config.format == "xlsx"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name: Bad Name\n", "must be lower-case letters"),
        ("format: pdf\n", "format: Input should be 'csv', 'xlsx' or 'parquet'"),
        ("schedule: every day\n", "schedule 'every day' is not a cron expression"),
        ("colour: red\n", "colour: unknown setting; a preset takes account,"),
        ("[not, a, mapping]\n", "a preset is a mapping"),
    ],
)
def test_a_bad_preset_names_its_file_and_field(tmp_path: Path, text: str, message: str) -> None:
    path = _preset(tmp_path, text)
    with pytest.raises(PresetError) as err:
        load_preset(path)
    assert str(path) in str(err.value) and message in str(err.value)
