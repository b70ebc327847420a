from __future__ import annotations

import sqlite3
import time
import uuid
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from connectors.store import RecordStore, schema
from connectors.store.faults import is_transient
from pipelines.imports import dropzone
from pipelines.imports.assets import (
    ERROR_RATE_CHECK,
    HISTORY_COLUMNS,
    IMPORTED_CHECK,
    ImportConfig,
    _build_imported_file,
    imported_file,
)
from pipelines.imports.errors import ImportFailed
from pipelines.imports.sensors import build_dropzone_sensor
from pipelines.retries import RETRY_POLICY
from resources import RecordStoreResource
from tests.imports.helpers import file_materializations

HEADER = "Application ID,First Name,Last Name,Email,Job Code,Job Title,Stage\n"
ROWS = [f"APP-{i},First{i},Last{i},person{i}@example.com,ENG-{i % 2},Engineer {i % 2},Applied\n" for i in range(6)]
CSV = HEADER + "".join(ROWS)
UNREACHABLE_PG = "postgresql+psycopg://postgres@127.0.0.1:1/nowhere"


@pytest.fixture
def slug(store: RecordStore) -> str:
    s = f"t-{uuid.uuid4().hex[:10]}"
    store.ensure_account(s)
    return s


@pytest.fixture
def dropzone_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "dropzone"
    monkeypatch.setenv("BULKOPS_DROPZONE", str(root))
    monkeypatch.setenv("BULKOPS_VAR_DIR", str(tmp_path / "var"))
    return root


def write(path: Path, text: str = CSV) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def materialize(
    instance: dg.DagsterInstance,
    url: str,
    path: Path | None,
    *,
    key: str | None = None,
    asset: dg.AssetsDefinition = imported_file,
    **config: object,
) -> dg.ExecuteInProcessResult:
    if key is None:
        assert path is not None
        key = dropzone.partition_key(str(config.get("entity") or "applications"), path.name, dropzone.file_sha256(path))
    if not instance.has_dynamic_partition("import_files", key):
        instance.add_dynamic_partitions("import_files", [key])
    return dg.materialize(
        [asset],
        instance=instance,
        partition_key=key,
        resources={"record_store": RecordStoreResource(database_url=url)},
        run_config=dg.RunConfig(ops={"imported_file": ImportConfig(path=str(path) if path else "", **config)}),
        raise_on_error=False,
    )


def count(store: RecordStore, table: sa.Table, slug: str) -> int:
    with store.engine.connect() as conn:
        return conn.scalar(
            sa.select(sa.func.count()).select_from(table).where(table.c.account_id == store.account_id(slug))
        )


def history(store: RecordStore, run_id: str) -> list[dict]:
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(schema.import_history).where(schema.import_history.c.dagster_run_id == run_id))
        return [dict(r._mapping) for r in rows]


def retries(result: dg.ExecuteInProcessResult) -> int:
    return sum(1 for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY")


def failure_description(result: dg.ExecuteInProcessResult) -> str:
    [failure] = [e for e in result.all_events if e.is_step_failure]
    data = failure.step_failure_data
    return data.user_failure_data.description if data.user_failure_data else data.error.message


def test_a_materialization_imports_the_rows_records_history_and_reports_metadata(
    tmp_path: Path, instance: dg.DagsterInstance, store: RecordStore, store_url: str, slug: str
) -> None:
    path = write(tmp_path / "hires.csv")

    result = materialize(instance, store_url, path, account=slug)

    assert result.success
    assert instance.get_run_by_id(result.run_id).status == dg.DagsterRunStatus.SUCCESS
    assert count(store, schema.applications, slug) == len(ROWS)
    [row] = history(store, result.run_id)
    assert (row["status"], row["type"], row["file"], row["created"], row["errors"]) == (
        "completed",
        "applications",
        "hires.csv",
        len(ROWS),
        0,
    )
    assert row["partition_key"] == result.dagster_run.tags["dagster/partition"]
    [mat] = file_materializations(result)
    md = mat.metadata
    assert set(HISTORY_COLUMNS) <= set(md)
    assert md["created"].value == len(ROWS) and md["status"].value == "completed"
    assert md["dagster/row_count"].value == len(ROWS)
    assert md["import_id"].value == str(row["id"])
    assert [r.data["file"] for r in md["summary"].value.records] == ["hires.csv"]
    checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
    assert {name: c.passed for name, c in checks.items()} == {ERROR_RATE_CHECK: True, IMPORTED_CHECK: True}
    assert checks[IMPORTED_CHECK].partition == result.dagster_run.tags["dagster/partition"]
    assert path.exists(), "files outside the drop zone are never moved"


def test_progress_is_observed_per_committed_batch(
    tmp_path: Path, instance: dg.DagsterInstance, sqlite_url: str
) -> None:
    slug = f"t-{uuid.uuid4().hex[:10]}"
    RecordStore(sqlite_url).ensure_account(slug)
    path = write(tmp_path / "batches.csv")

    result = materialize(instance, sqlite_url, path, account=slug, batch_size=2)

    observations = [
        e.asset_observation_data.asset_observation
        for e in result.all_events
        if e.event_type_value == "ASSET_OBSERVATION"
    ]
    assert len(observations) >= 3
    assert all(o.partition == result.dagster_run.tags["dagster/partition"] for o in observations)
    assert observations[-1].metadata["rows_read"].value == len(ROWS)


def test_a_dry_run_writes_nothing_and_reports_a_sample(
    tmp_path: Path, instance: dg.DagsterInstance, store: RecordStore, store_url: str, slug: str
) -> None:
    path = write(tmp_path / "preview.csv")

    result = materialize(instance, store_url, path, account=slug, dry_run=True)

    assert result.success
    assert count(store, schema.applications, slug) == 0
    [mat] = file_materializations(result)
    assert mat.metadata["dry_run"].value is True
    assert mat.metadata["sample"].value
    assert mat.metadata["created"].value == len(ROWS)


def test_rows_with_errors_fail_the_error_rate_check_and_leave_a_failed_rows_csv(
    tmp_path: Path, instance: dg.DagsterInstance, sqlite_url: str
) -> None:
    slug = f"t-{uuid.uuid4().hex[:10]}"
    RecordStore(sqlite_url).ensure_account(slug)
    mapping = write(
        tmp_path / "mapping.yaml", "columns:\n  Email: {target: email, required: true}\n  First Name: first_name\n"
    )
    path = write(tmp_path / "bad.csv", "Email,First Name\n,NoEmail\n,NoEmail2\nok@example.com,Ok\n")

    result = materialize(
        instance, sqlite_url, path, account=slug, entity="candidates", mapping_path=str(mapping), error_threshold=0.5
    )

    assert result.success, failure_description(result)
    [mat] = file_materializations(result)
    assert mat.metadata["errors"].value == 2
    assert Path(mat.metadata["failed_rows"].value).is_file()
    checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
    # too many bad rows, yet the file was imported
    assert checks == {ERROR_RATE_CHECK: False, IMPORTED_CHECK: True}


def test_an_identical_file_is_recorded_as_skipped_not_imported_twice(
    tmp_path: Path, instance: dg.DagsterInstance, store: RecordStore, store_url: str, slug: str
) -> None:
    first = materialize(instance, store_url, write(tmp_path / "a" / "hires.csv"), account=slug)
    again = materialize(instance, store_url, write(tmp_path / "b" / "hires-copy.csv"), account=slug)

    assert first.success and again.success
    assert count(store, schema.applications, slug) == len(ROWS)
    [row] = history(store, again.run_id)
    assert row["created"] == 0
    [mat] = file_materializations(again)
    assert mat.metadata["status"].value == "skipped"
    assert mat.metadata["duplicate_of"].value == file_materializations(first)[0].metadata["import_id"].value


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"batch_size": 0}, "batch_size"),
        ({"on_duplicate": "update", "duplicate_keys": ["phone"]}, "duplicate_keys"),
        ({"account": "no-such-account"}, "no-such-account"),
        ({"mapping_yaml": "columns:\n  Mail Address: email\n"}, "Mail Address"),
    ],
    ids=["bad-batch-size", "bad-duplicate-key", "unknown-account", "mapping-names-missing-column"],
)
def test_terminal_errors_fail_once_without_retries(
    tmp_path: Path, instance: dg.DagsterInstance, sqlite_url: str, config: dict, message: str
) -> None:
    slug = f"t-{uuid.uuid4().hex[:10]}"
    RecordStore(sqlite_url).ensure_account(slug)
    path = write(tmp_path / "x.csv")

    result = materialize(
        instance,
        sqlite_url,
        path,
        asset=_build_imported_file(dg.RetryPolicy(max_retries=3)),
        **{"account": slug, **config},
    )

    assert not result.success
    assert retries(result) == 0
    assert message in failure_description(result)
    assert instance.get_run_by_id(result.run_id).status == dg.DagsterRunStatus.FAILURE


def test_a_transient_database_error_is_retried_then_fails(tmp_path: Path, instance: dg.DagsterInstance) -> None:
    path = write(tmp_path / "x.csv")
    # same classification as production, without its backoff delays
    asset = _build_imported_file(dg.RetryPolicy(max_retries=3))

    result = materialize(instance, UNREACHABLE_PG, path, asset=asset)

    assert not result.success
    assert retries(result) == 3


def test_the_production_retry_policy_backs_off_exponentially_with_jitter() -> None:
    assert imported_file.op.retry_policy == RETRY_POLICY
    assert (RETRY_POLICY.max_retries, RETRY_POLICY.backoff, RETRY_POLICY.jitter) == (
        3,
        dg.Backoff.EXPONENTIAL,
        dg.Jitter.PLUS_MINUS,
    )
    assert RETRY_POLICY.delay and RETRY_POLICY.delay > 0


def _locked_sqlite(tmp_path: Path) -> BaseException:
    url = f"sqlite:///{tmp_path / 'locked.db'}"
    holder = sa.create_engine(url)
    waiter = sa.create_engine(url, connect_args={"timeout": 0})
    with holder.connect() as conn:
        conn.exec_driver_sql("CREATE TABLE t (x int)")
        conn.commit()
        conn.exec_driver_sql("BEGIN EXCLUSIVE")
        try:
            with waiter.begin() as other:
                other.exec_driver_sql("INSERT INTO t VALUES (1)")
        except sa.exc.OperationalError as exc:
            return exc
        finally:
            conn.rollback()
    raise AssertionError("expected a lock error")


def _sqlite_missing_table(tmp_path: Path) -> BaseException:
    with sa.create_engine(f"sqlite:///{tmp_path / 'x.db'}").connect() as conn:
        try:
            conn.exec_driver_sql("SELECT * FROM nope")
        except sa.exc.OperationalError as exc:
            return exc
    raise AssertionError


def _pg_refused(_: Path) -> BaseException:
    try:
        with sa.create_engine(UNREACHABLE_PG).connect():
            pass
    except sa.exc.OperationalError as exc:
        return exc
    raise AssertionError


def _pg_lock_timeout(pg_url: str) -> BaseException:
    engine = sa.create_engine(pg_url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.connect() as holder, engine.connect() as waiter:
        holder.exec_driver_sql("LOCK TABLE accounts IN ACCESS EXCLUSIVE MODE")
        try:
            waiter.exec_driver_sql("SET lock_timeout = '50ms'")
            waiter.exec_driver_sql("SELECT count(*) FROM accounts")
        except sa.exc.OperationalError as exc:
            return exc
        finally:
            holder.rollback()
            waiter.rollback()
    engine.dispose()
    raise AssertionError


def _pg_syntax_error(pg_url: str) -> BaseException:
    engine = sa.create_engine(pg_url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.connect() as conn:
        try:
            conn.exec_driver_sql("SELEC 1")
        except sa.exc.DBAPIError as exc:
            return exc
    raise AssertionError


@pytest.mark.parametrize(
    ("make", "transient"),
    [
        (_locked_sqlite, True),
        (_sqlite_missing_table, False),
        (_pg_refused, True),
        (lambda _: ImportFailed("row 3, column Email: not an email"), False),
        (lambda _: ValueError("bug"), False),
        (lambda _: sqlite3.OperationalError("database is locked"), True),
    ],
    ids=[
        "sqlite-locked",
        "sqlite-missing-table",
        "pg-connection-refused",
        "import-failed",
        "plain-bug",
        "raw-sqlite-locked",
    ],
)
def test_transient_errors_are_told_apart_from_terminal_ones(tmp_path: Path, make, transient: bool) -> None:
    assert is_transient(make(tmp_path)) is transient


@pytest.mark.postgres
@pytest.mark.parametrize(
    ("make", "transient"),
    [(_pg_lock_timeout, True), (_pg_syntax_error, False)],
    ids=["pg-lock-timeout", "pg-syntax-error"],
)
def test_postgres_lock_timeouts_are_transient_and_sql_errors_are_not(pg_url: str, make, transient: bool) -> None:
    assert is_transient(make(pg_url)) is transient


def test_drop_zone_files_move_to_processed_and_a_re_drop_is_skipped(
    dropzone_root: Path, instance: dg.DagsterInstance, store: RecordStore, store_url: str, slug: str
) -> None:
    sensor = build_dropzone_sensor("applications", clock=lambda: time.time() + 60, root=dropzone_root)
    write(dropzone_root / "applications" / "bulkops.yaml", f"account: {slug}\n")
    path = write(dropzone_root / "applications" / "hires.csv")
    sha = dropzone.file_sha256(path)

    first_tick = sensor(dg.build_sensor_context(instance=instance))
    [request] = first_tick.run_requests
    instance.add_dynamic_partitions("import_files", first_tick.dynamic_partitions_requests[0].partition_keys)
    first = dg.materialize(
        [imported_file],
        instance=instance,
        partition_key=request.partition_key,
        run_config=request.run_config,
        resources={"record_store": RecordStoreResource(database_url=store_url)},
        tags=request.tags,
    )
    processed = dropzone_root / "applications" / "processed" / f"hires@{sha[:12]}.csv"
    assert first.success and processed.is_file() and not path.exists()

    write(path)
    second_tick = sensor(dg.build_sensor_context(instance=instance, cursor=first_tick.cursor))
    [redrop] = second_tick.run_requests
    second = dg.materialize(
        [imported_file],
        instance=instance,
        partition_key=redrop.partition_key,
        run_config=redrop.run_config,
        resources={"record_store": RecordStoreResource(database_url=store_url)},
    )

    assert second.success and not path.exists()
    assert count(store, schema.applications, slug) == len(ROWS)
    [mat] = file_materializations(second)
    assert mat.metadata["status"].value == "skipped"


def test_a_failed_drop_moves_to_failed_and_its_partition_re_runs_after_the_fix(
    dropzone_root: Path, instance: dg.DagsterInstance, store: RecordStore, store_url: str, slug: str
) -> None:
    path = write(dropzone_root / "candidates" / "people.csv", "Mail,Name\na@example.com,A\nb@example.com,B\n")
    key = dropzone.partition_key("candidates", path.name, dropzone.file_sha256(path))
    broken = "columns:\n  Email: email\n"

    failed = materialize(instance, store_url, path, key=key, account=slug, mapping_yaml=broken)
    assert not failed.success and not path.exists()
    assert (dropzone_root / "candidates" / "failed").is_dir()

    # a UI re-run of the partition: no path in the config, the file is found in failed/
    fixed = materialize(
        instance, store_url, None, key=key, account=slug, mapping_yaml="columns:\n  Mail: email\n  Name: full_name\n"
    )

    assert fixed.success, failure_description(fixed)
    assert count(store, schema.users, slug) == 2
    assert list((dropzone_root / "candidates" / "failed").iterdir()) == []
    assert len(list((dropzone_root / "candidates" / "processed").iterdir())) == 1


def test_the_code_location_holds_the_import_graph_described_and_grouped() -> None:
    from pipelines.definitions import defs

    spec = next(s for s in defs.resolve_all_asset_specs() if s.key == dg.AssetKey("imported_file"))
    assert (spec.group_name, spec.partitions_def.name) == ("imports", "import_files")
    assert spec.description
    checks = {c.name for c in defs.resolve_asset_graph().get_check_keys_for_assets({spec.key})}
    assert checks == {ERROR_RATE_CHECK, IMPORTED_CHECK}
    job = defs.resolve_job_def("import_job")
    assert job.description and job.tags["bulkops/kind"] == "import"
    assert {s.name for s in defs.sensors} >= {
        f"{e}_dropzone_sensor" for e in ("applications", "candidates", "jobs", "contracts")
    }


def test_a_run_waits_while_an_earlier_run_imports_the_same_content(
    tmp_path: Path, instance: dg.DagsterInstance, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipelines.imports import assets

    monkeypatch.setattr(assets, "BUSY_RETRIES", 1)
    monkeypatch.setattr(assets, "BUSY_WAIT_SECONDS", 0)
    slug = f"t-{uuid.uuid4().hex[:10]}"
    store = RecordStore(sqlite_url)
    store.ensure_account(slug)
    path = write(tmp_path / "twice.csv")
    earlier = instance.add_run(
        dg.DagsterRun(
            job_name="import_job",
            run_id=str(uuid.uuid4()),
            status=dg.DagsterRunStatus.STARTED,
            tags={assets.SHA_TAG: dropzone.file_sha256(path)},
        )
    )

    waited = materialize(instance, sqlite_url, path, account=slug)

    assert not waited.success and retries(waited) == 1
    assert count(store, schema.applications, slug) == 0

    instance.report_run_failed(earlier)
    after = materialize(instance, sqlite_url, path, account=slug)

    assert after.success and retries(after) == 0
    assert count(store, schema.applications, slug) == len(ROWS)


def test_imports_bulk_jobs_and_rollbacks_share_one_retry_policy_and_one_transient_rule() -> None:
    from connectors.store import bulk
    from pipelines.bulk.ops import apply_bulk_job
    from pipelines.imports.rollback import rollback_import_job

    [rollback_op] = rollback_import_job.graph.node_defs
    steps = {"imported_file": imported_file.op, "apply_bulk_job": apply_bulk_job, "rollback": rollback_op}
    assert {name: op.retry_policy for name, op in steps.items()} == dict.fromkeys(steps, RETRY_POLICY)
    # the bulk-job batch loop retries in place with the same rule
    assert bulk._is_transient is is_transient
