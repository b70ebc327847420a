"""Drop folders against hostile names and links: links out of the folder are never followed, and any
name a file system allows becomes a valid partition, a readable key and an imported file."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from connectors.store import RecordStore, schema
from pipelines.imports import dropzone
from pipelines.imports.assets import ImportConfig, imported_file
from pipelines.imports.sensors import build_dropzone_sensor
from resources import RecordStoreResource
from tests.imports.test_sensors import CSV, drop, later, tick

ODD_NAMES = {
    "unicode": "résumés été 2026 候选人.csv",
    "spaces": "  spring   hires .csv",
    "leading-dash": "-rf --help.csv",
    "quotes": 'it\'s "final" (1).csv',
    "newline": "two\nlines.csv",
    "very-long": "x" * 240 + ".csv",
    "dots": "a..b...csv",
}


def test_a_link_to_a_file_outside_the_drop_folder_is_never_followed(tmp_path: Path) -> None:
    secret = tmp_path / "outside" / "secret.csv"
    secret.parent.mkdir()
    secret.write_text(CSV)
    folder = tmp_path / "drop" / "applications"
    folder.mkdir(parents=True)
    (folder / "link.csv").symlink_to(secret)
    (folder / "dir-link").symlink_to(secret.parent, target_is_directory=True)

    result = tick(build_dropzone_sensor("applications", clock=later, root=tmp_path / "drop"))

    assert result.run_requests == []
    assert secret.exists() and (folder / "link.csv").is_symlink()


@pytest.mark.parametrize("name", list(ODD_NAMES.values()), ids=list(ODD_NAMES))
def test_any_file_name_becomes_one_valid_partition(tmp_path: Path, name: str) -> None:
    path = drop(tmp_path, name)
    result = tick(build_dropzone_sensor("applications", clock=later, root=tmp_path))
    [request] = result.run_requests
    key = request.partition_key
    assert key == dropzone.partition_key("applications", name, dropzone.file_sha256(path))
    assert dropzone.parse_partition_key(key) is not None
    assert len(key) < 250 and not any(bad in key for bad in ("...", "\n", "\t", "\0", "/..", " "))
    assert request.run_config["ops"]["imported_file"]["config"]["path"] == str(path)


@pytest.mark.slow
@pytest.mark.parametrize("label", ["unicode", "leading-dash", "newline", "very-long"])
def test_a_file_with_an_odd_name_is_imported_and_moved(
    tmp_path: Path, label: str, instance: dg.DagsterInstance, store: RecordStore, store_url: str
) -> None:
    root = tmp_path / "drop"
    account = f"t-{uuid.uuid4().hex[:10]}"
    store.ensure_account(account)
    path = drop(root, ODD_NAMES[label])
    [request] = tick(build_dropzone_sensor("applications", clock=later, root=root)).run_requests
    key = request.partition_key
    instance.add_dynamic_partitions("import_files", [key])
    os.environ["BULKOPS_DROPZONE"] = str(root)
    try:
        result = dg.materialize(
            [imported_file],
            instance=instance,
            partition_key=key,
            resources={"record_store": RecordStoreResource(database_url=store_url)},
            run_config=dg.RunConfig(
                ops={"imported_file": ImportConfig(path=str(path), entity="applications", account=account)}
            ),
        )
    finally:
        del os.environ["BULKOPS_DROPZONE"]
    assert result.success
    with store.engine.connect() as conn:
        refs = conn.scalars(
            sa.select(schema.applications.c.external_id).where(
                schema.applications.c.account_id == store.account_id(account)
            )
        ).all()
    assert refs == ["APP-1"]
    [moved] = list((root / "applications" / "processed").iterdir())
    assert len(moved.name.encode()) <= 255
    # a name too long to take the content's hash keeps as much of its stem as fits
    assert ODD_NAMES[label].startswith(dropzone.original_name(moved.name).removesuffix(".csv"))
    assert not path.exists()


@pytest.mark.parametrize("stem", ["x" * 300, "é" * 200, "候" * 120, "a\nb" * 90])
def test_a_moved_name_fits_the_file_system_and_never_splits_a_character(stem: str) -> None:
    moved = dropzone.moved_name(stem + ".csv", "f" * 64)
    assert len(moved.encode("utf-8")) <= 255
    assert moved.endswith("@ffffffffffff.csv")
    assert stem.startswith(dropzone.original_name(moved).removesuffix(".csv"))
    assert dropzone.moved_name(moved, "f" * 64) == moved


@pytest.mark.parametrize("how", ["rewritten-in-place", "renamed-over"])
def test_a_file_replaced_while_it_is_imported_fails_saying_so_and_the_new_file_imports_without_duplicates(
    store: RecordStore, account: uuid.UUID, tmp_path: Path, how: str
) -> None:
    from pipelines.imports.engine import ImportOptions, run_import
    from pipelines.imports.errors import ImportFailed
    from tests.imports.helpers import apps_csv, count

    def rows(stage: str) -> list[str]:
        return [f"R-{i},F{i},L{i},r{i}@example.com,JOB-1,{stage},2026-01-02,1" for i in range(120)]

    path = apps_csv(tmp_path, rows("Applied"), name="people.csv")
    newer = (
        apps_csv(tmp_path / "next", rows("Interview"), name="people.csv")
        if (tmp_path / "next").mkdir() is None
        else None
    )
    replaced: list[int] = []

    def replace(progress: object) -> None:
        if replaced:
            return
        replaced.append(1)
        if how == "renamed-over":
            os.replace(newer, path)
        else:
            path.write_bytes(newer.read_bytes())

    with pytest.raises(ImportFailed, match=r"people\.csv was replaced or changed while it was being imported"):
        run_import(store, account, path, ImportOptions(batch_size=40), failed_rows_dir=tmp_path, on_progress=replace)
    assert 0 < count(store, "applications", account) <= 120

    again = run_import(store, account, path, ImportOptions(batch_size=40), failed_rows_dir=tmp_path)
    assert again.status == "completed"
    a = schema.applications
    with store.engine.connect() as conn:
        stages = conn.scalars(sa.select(a.c.stage).where(a.c.account_id == account)).all()
    assert len(stages) == 120 and set(stages) == {"interview"}
