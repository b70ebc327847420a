from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from connectors.store import RecordStore, schema
from pipelines.imports import dropzone
from pipelines.imports.assets import ImportConfig, imported_file
from pipelines.imports.sensors import FOLDER_CONFIG, Watermark, build_dropzone_sensor
from resources import RecordStoreResource
from tests.imports.helpers import file_materializations

CSV = (
    "Application ID,First Name,Last Name,Email,Job Code,Job Title\nAPP-1,Ada,Lovelace,ada@example.com,ENG-1,Engineer\n"
)


def later(seconds: float = 60) -> float:
    return time.time() + seconds


def drop(root: Path, name: str, text: str = CSV, entity: str = "applications") -> Path:
    folder = root / entity
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text)
    return path


def tick(sensor: dg.SensorDefinition, cursor: str | None = None) -> dg.SensorResult:
    # the sensors read no instance state: no instance to build keeps these tests fast
    return sensor(dg.build_sensor_context(cursor=cursor))


def requested_files(result: dg.SensorResult) -> list[str]:
    """The files a tick's run requests import: one per import_job run, several per shared run."""
    names = []
    for r in result.run_requests:
        ops = r.run_config["ops"]
        if "imported_file" in ops:
            names.append(Path(ops["imported_file"]["config"]["path"]).name)
        else:
            names += [Path(f).name for f in ops["import_dropped_files"]["config"]["files"]]
    return names


def test_a_new_file_becomes_a_partition_and_a_run_request(tmp_path: Path) -> None:
    path = drop(tmp_path, "spring hires.csv")
    sensor = build_dropzone_sensor("applications", clock=later, root=tmp_path)

    result = tick(sensor)

    sha = dropzone.file_sha256(path)
    key = f"applications/spring-hires.csv@{sha[:12]}"
    [request] = result.run_requests
    assert request.partition_key == key
    assert sha in request.run_key
    assert request.tags["bulkops/sha256"] == sha
    config = request.run_config["ops"]["imported_file"]["config"]
    assert (config["path"], config["entity"], config["actor"]) == (
        str(path),
        "applications",
        "sensor:applications_dropzone_sensor",
    )
    [add] = result.dynamic_partitions_requests
    assert (add.partitions_def_name, add.partition_keys) == ("import_files", [key])
    assert len(result.cursor) < 100


def test_a_file_still_being_written_is_not_picked_up(tmp_path: Path) -> None:
    drop(tmp_path, "half.csv", CSV[:30])
    now = time.time()

    writing = tick(build_dropzone_sensor("applications", clock=lambda: now, settle_seconds=10, root=tmp_path))
    assert writing.run_requests == [] and "still being written" in writing.skip_reason.skip_message

    settled = tick(build_dropzone_sensor("applications", clock=lambda: now + 11, settle_seconds=10, root=tmp_path))
    assert len(settled.run_requests) == 1


@pytest.mark.parametrize(
    "name", [".hidden.csv", "~lock.csv", "upload.csv.part", "upload.csv.tmp", "x.crdownload", FOLDER_CONFIG]
)
def test_temporary_and_control_files_are_ignored(tmp_path: Path, name: str) -> None:
    drop(tmp_path, name, "account: demo\n" if name == FOLDER_CONFIG else CSV)
    result = tick(build_dropzone_sensor("applications", clock=later, root=tmp_path))
    assert result.run_requests == []


def test_requests_per_tick_are_capped_and_the_rest_wait_for_the_next_tick(tmp_path: Path) -> None:
    for i in range(5):
        drop(tmp_path, f"f{i}.csv", CSV + f"APP-{i + 10},X,Y,x{i}@example.com,ENG-1,Engineer\n")
    sensor = build_dropzone_sensor("applications", clock=later, max_files_per_tick=2, root=tmp_path)

    seen: list[str] = []
    cursor = None
    for _ in range(3):
        result = tick(sensor, cursor)
        assert 1 <= len(requested_files(result)) <= 2
        seen += requested_files(result)
        cursor = result.cursor
    assert sorted(seen) == [f"f{i}.csv" for i in range(5)]
    assert tick(sensor, cursor).skip_reason.skip_message == "no new files"


def test_the_byte_budget_caps_hashing_but_always_takes_one_file(tmp_path: Path) -> None:
    drop(tmp_path, "a.csv", CSV * 50)
    drop(tmp_path, "b.csv", CSV * 50 + "\n")
    sensor = build_dropzone_sensor("applications", clock=later, max_bytes_per_tick=10, root=tmp_path)
    first = tick(sensor)
    second = tick(sensor, first.cursor)
    assert [len(first.run_requests), len(second.run_requests)] == [1, 1]


def test_thousands_of_files_keep_a_small_cursor_and_a_capped_tick(tmp_path: Path) -> None:
    folder = tmp_path / "applications"
    folder.mkdir()
    for i in range(3000):
        (folder / f"batch-{i:05d}.csv").write_text(f"id\n{i}\n")
    sensor = build_dropzone_sensor("applications", clock=later, max_files_per_tick=100, root=tmp_path)

    result = tick(sensor)

    assert len(requested_files(result)) == 100
    # small files share runs of BULKOPS_IMPORT_FILES_PER_RUN (50)
    assert [r.job_name for r in result.run_requests] == ["shared_import_job"] * 2
    assert len(result.dynamic_partitions_requests[0].partition_keys) == 100
    assert len(result.cursor) < 100


def test_re_evaluating_a_tick_yields_the_same_run_keys(tmp_path: Path) -> None:
    drop(tmp_path, "a.csv")
    sensor = build_dropzone_sensor("applications", clock=later, root=tmp_path)
    # the daemon stores the cursor only after a tick completes: a crashed tick is evaluated again
    assert [r.run_key for r in tick(sensor).run_requests] == [r.run_key for r in tick(sensor).run_requests]


def test_an_identical_re_drop_gets_the_same_partition_and_a_new_run_key(tmp_path: Path) -> None:
    path = drop(tmp_path, "a.csv")
    sensor = build_dropzone_sensor("applications", clock=later, root=tmp_path)
    first = tick(sensor)
    dropzone.move_claimed(path, "applications", dropzone.file_sha256(path), dropzone.PROCESSED, tmp_path)

    drop(tmp_path, "a.csv")
    os.utime(tmp_path / "applications" / "a.csv", ns=(time.time_ns() + 5_000_000_000,) * 2)
    second = tick(sensor, first.cursor)

    [a], [b] = first.run_requests, second.run_requests
    assert a.partition_key == b.partition_key
    # a new arrival is a new run; the engine records it as a skipped duplicate (test_assets covers that)
    assert a.run_key != b.run_key


def test_a_file_moved_in_with_an_old_mtime_is_still_new(tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere.csv"
    outside.write_text(CSV)
    old = time.time() - 3600
    os.utime(outside, (old, old))
    (tmp_path / "applications").mkdir()
    cursor = Watermark(int((old + 60) * 1e9), "").dump()

    os.replace(outside, tmp_path / "applications" / "elsewhere.csv")
    result = tick(build_dropzone_sensor("applications", clock=later, root=tmp_path), cursor)

    assert [r.tags["bulkops/file"] for r in result.run_requests] == ["elsewhere.csv"]


def test_the_folder_config_sets_the_launch_config(tmp_path: Path) -> None:
    drop(tmp_path, FOLDER_CONFIG, "account: acme\non_duplicate: skip\nbatch_size: 100\n", entity="candidates")
    drop(tmp_path, "people.csv", "email\na@example.com\n", entity="candidates")

    [request] = tick(build_dropzone_sensor("candidates", clock=later, root=tmp_path)).run_requests

    config = request.run_config["ops"]["imported_file"]["config"]
    assert (config["account"], config["on_duplicate"], config["batch_size"], config["entity"]) == (
        "acme",
        "skip",
        100,
        "candidates",
    )


def test_a_folder_config_naming_an_unknown_field_fails_the_tick(tmp_path: Path) -> None:
    drop(tmp_path, FOLDER_CONFIG, "acount: acme\n")
    drop(tmp_path, "a.csv")
    with pytest.raises(Exception, match="acount"):
        tick(build_dropzone_sensor("applications", clock=later, root=tmp_path))


def test_every_entity_of_the_registry_has_a_described_running_sensor() -> None:
    from connectors.store.registry import ENTITY_NAMES
    from pipelines.imports.definitions import defs

    sensors = {s.name: s for s in defs.sensors if s.name.endswith("_dropzone_sensor")}
    assert set(sensors) == {f"{e}_dropzone_sensor" for e in ENTITY_NAMES}
    for s in sensors.values():
        assert s.description and {j.name for j in s.jobs} == {"import_job", "shared_import_job"}
        assert s.default_status == dg.DefaultSensorStatus.RUNNING


def test_the_settle_time_and_caps_are_read_at_each_tick(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # a sensor is built once, when the code location loads; its settings must follow the environment
    for i in range(3):
        drop(tmp_path, f"f{i}.csv", CSV + f"APP-{i + 10},X,Y,x{i}@example.com,ENG-1,Engineer\n")
    now = time.time()
    sensor = build_dropzone_sensor("applications", clock=lambda: now + 30, root=tmp_path)

    monkeypatch.setenv("BULKOPS_DROPZONE_SETTLE_SECONDS", "60")
    assert "still being written" in tick(sensor).skip_reason.skip_message

    monkeypatch.setenv("BULKOPS_DROPZONE_SETTLE_SECONDS", "5")
    monkeypatch.setenv("BULKOPS_DROPZONE_MAX_FILES_PER_TICK", "2")
    assert len(requested_files(tick(sensor))) == 2
    monkeypatch.setenv("BULKOPS_IMPORT_FILES_PER_RUN", "1")
    assert len(tick(sensor).run_requests) == 2

    monkeypatch.setenv("BULKOPS_DROPZONE_MAX_FILES_PER_TICK", "100")
    monkeypatch.setenv("BULKOPS_DROPZONE_MAX_BYTES_PER_TICK", "1")
    assert len(tick(sensor).run_requests) == 1


@pytest.mark.parametrize("value", ["ten", "-1"])
def test_a_bad_setting_fails_the_tick_naming_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    drop(tmp_path, "a.csv")
    monkeypatch.setenv("BULKOPS_DROPZONE_SETTLE_SECONDS", value)
    with pytest.raises(ValueError, match=r"\$BULKOPS_DROPZONE_SETTLE_SECONDS must"):
        tick(build_dropzone_sensor("applications", clock=later, root=tmp_path))


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("plain.csv", "applications/plain.csv@0123456789ab"),
        ("with spaces & stuff.csv", "applications/with-spaces-stuff.csv@0123456789ab"),
        ("dots...csv", "applications/dots.csv@0123456789ab"),
        ("tab\tnewline\n.csv", "applications/tab-newline-.csv@0123456789ab"),
    ],
    ids=["plain", "spaces", "ellipsis", "control-chars"],
)
def test_partition_keys_are_valid_and_readable(name: str, expected: str) -> None:
    key = dropzone.partition_key("applications", name, "0123456789ab" + "0" * 52)
    assert key == expected
    assert dropzone.parse_partition_key(key) == dropzone.PartitionRef(
        "applications", expected.split("/")[1].rsplit("@")[0], "0123456789ab"
    )
    for bad in ("...", "\n", "\t", "\0"):
        assert bad not in key


def test_moved_files_are_found_again_for_a_partition_re_run(tmp_path: Path) -> None:
    path = drop(tmp_path, "a.csv")
    sha = dropzone.file_sha256(path)
    ref = dropzone.parse_partition_key(dropzone.partition_key("applications", "a.csv", sha))
    assert dropzone.locate(ref, tmp_path) == path
    failed = dropzone.move_claimed(path, "applications", sha, dropzone.FAILED, tmp_path)
    assert failed == tmp_path / "applications" / "failed" / f"a@{sha[:12]}.csv"
    assert dropzone.locate(ref, tmp_path) == failed
    assert dropzone.original_name(failed.name) == "a.csv"


def test_files_outside_the_drop_zone_are_never_moved(tmp_path: Path) -> None:
    path = tmp_path / "mine.csv"
    path.write_text(CSV)
    assert dropzone.move_claimed(path, "applications", "0" * 64, dropzone.PROCESSED, tmp_path) == path
    assert path.exists()


def _run_partition(instance: dg.DagsterInstance, url: str, key: str, **config: object) -> dg.ExecuteInProcessResult:
    if not instance.has_dynamic_partition("import_files", key):
        instance.add_dynamic_partitions("import_files", [key])
    return dg.materialize(
        [imported_file],
        instance=instance,
        partition_key=key,
        resources={"record_store": RecordStoreResource(database_url=url)},
        run_config=dg.RunConfig(ops={"imported_file": ImportConfig(**config)}),
        raise_on_error=False,
    )


def _source_paths(store: RecordStore, account: str, sha: str) -> list[str]:
    h = schema.import_history
    query = sa.select(h.c.source_path).where(h.c.account_id == store.account_id(account), h.c.content_sha256 == sha)
    with store.engine.connect() as conn:
        return sorted(conn.scalars(query))


def test_history_and_partition_say_where_a_dropped_file_is_now(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, instance: dg.DagsterInstance, store: RecordStore, store_url: str
) -> None:
    root = tmp_path / "dropzone"
    monkeypatch.setenv("BULKOPS_DROPZONE", str(root))
    monkeypatch.setenv("BULKOPS_VAR_DIR", str(tmp_path / "var"))
    account = f"t-{uuid.uuid4().hex[:10]}"
    store.ensure_account(account)
    path = drop(root, "people.csv", "Mail,Name\na@example.com,A\nb@example.com,B\n", entity="candidates")
    sha = dropzone.file_sha256(path)
    key = dropzone.partition_key("candidates", path.name, sha)
    failed_path = str(root / "candidates" / "failed" / f"people@{sha[:12]}.csv")
    processed_path = str(root / "candidates" / "processed" / f"people@{sha[:12]}.csv")
    good_mapping = "columns:\n  Mail: email\n  Name: full_name\n"

    failed = _run_partition(
        instance, store_url, key, path=str(path), account=account, mapping_yaml="columns:\n  E: email\n"
    )
    assert not failed.success and Path(failed_path).is_file()
    assert _source_paths(store, account, sha) == [failed_path]

    # a re-run of the partition finds the file in failed/, resumes its history row and moves the file on
    fixed = _run_partition(instance, store_url, key, account=account, mapping_yaml=good_mapping)
    assert fixed.success and Path(processed_path).is_file()
    assert _source_paths(store, account, sha) == [processed_path]
    [materialization] = file_materializations(fixed)
    assert materialization.metadata["source_path"].value == processed_path

    # an identical re-drop is recorded as skipped, and its row too names the file where it ends up
    drop(root, "people.csv", Path(processed_path).read_text(), entity="candidates")
    skipped = _run_partition(instance, store_url, key, path=str(path), account=account, mapping_yaml=good_mapping)
    assert skipped.success and not path.exists()
    assert _source_paths(store, account, sha) == [processed_path, processed_path]
