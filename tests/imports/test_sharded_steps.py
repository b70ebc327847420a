"""A sharded import whose shards are Dagster steps (`sharded_import_job`): the records, counts and failed rows of one import."""

from __future__ import annotations

import os
import uuid
import zlib

import dagster as dg
import pytest

from connectors import settings
from connectors.store import RecordStore, history
from pipelines.imports import shards
from pipelines.imports.engine import ImportOptions, list_imports, run_import, write_import_shard
from pipelines.imports.sharded import sharded_import_job
from tests.imports.helpers import apps_csv
from tests.imports.test_shards import OUTCOME, _email_of_shard, audit_counts, failed_rows, mixed_rows, records

# each runs a Dagster job of five or more steps: seconds, not the fast tier's milliseconds
pytestmark = pytest.mark.slow


def details(store, import_id: uuid.UUID) -> dict:
    with store.begin() as conn:
        return dict(history.row(conn, import_id).details or {})


def run_config(path, account: str, store_url: str, **options) -> dict:
    return {
        "ops": {"plan_import_shards": {"config": {"path": str(path), "account": account, **options}}},
        "resources": {"record_store": {"config": {"database_url": store_url}}},
    }


def test_shard_steps_write_what_one_import_writes(store, store_url, tmp_path, instance) -> None:
    path = apps_csv(tmp_path, mixed_rows())
    one, many = (f"t-{uuid.uuid4().hex[:10]}" for _ in range(2))
    one_id, many_id = store.ensure_account(one), store.ensure_account(many)
    a = run_import(store, one_id, path, ImportOptions(batch_size=10), failed_rows_dir=tmp_path / "one")

    result = sharded_import_job.execute_in_process(
        run_config=run_config(path, many, store_url, batch_size=10, shards=3), instance=instance
    )

    assert result.success
    steps = sorted(e.step_key for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_SUCCESS)
    assert steps == [
        "finish_sharded_import",
        "plan_import_shards",
        "write_import_shard[shard_0]",
        "write_import_shard[shard_1]",
        "write_import_shard[shard_2]",
    ]
    (b,) = list_imports(store, many_id)
    assert b["status"] == "completed"
    assert [b[k] for k in OUTCOME] == [getattr(a, k) for k in OUTCOME]
    assert records(store, many_id) == records(store, one_id)
    assert audit_counts(store, b["id"]) == audit_counts(store, a.import_id)
    assert failed_rows(b["failed_rows_path"]) == failed_rows(a.failed_rows_path)
    assert set(details(store, b["id"])["shards"]["committed"].values()) == {160}
    # each shard step says what it wrote; together, the import's counts
    written = [result.output_for_node("write_import_shard")[f"shard_{k}"]["counts"] for k in range(3)]
    assert sum(w["rows_read"] for w in written) == a.rows_read
    assert sum(w["created"] for w in written) == a.created


def test_an_unsharded_import_runs_whole_in_the_planning_step(store, store_url, tmp_path, instance) -> None:
    path = apps_csv(tmp_path, mixed_rows())
    account = f"t-{uuid.uuid4().hex[:10]}"
    account_id = store.ensure_account(account)

    result = sharded_import_job.execute_in_process(run_config=run_config(path, account, store_url), instance=instance)

    assert result.success
    (h,) = list_imports(store, account_id)
    assert (h["status"], h["rows_read"], "shards" in details(store, h["id"])) == ("completed", 160, False)
    steps = [e.step_key for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_SUCCESS]
    assert steps == ["plan_import_shards", "finish_sharded_import"]


@pytest.mark.postgres
def test_the_multiprocess_executor_runs_each_shard_in_a_process_of_its_own(pg_url, tmp_path, instance) -> None:
    store = RecordStore(pg_url)
    try:
        path = apps_csv(tmp_path, mixed_rows())
        one, many = (f"t-{uuid.uuid4().hex[:10]}" for _ in range(2))
        one_id, many_id = store.ensure_account(one), store.ensure_account(many)
        a = run_import(store, one_id, path, ImportOptions(batch_size=10), failed_rows_dir=tmp_path / "one")

        with dg.execute_job(
            dg.reconstructable(sharded_import_job),
            instance=instance,
            run_config=run_config(path, many, pg_url, batch_size=10, shards=2),
        ) as result:
            assert result.success
            written = [result.output_for_node("write_import_shard")[f"shard_{k}"] for k in range(2)]

        (b,) = list_imports(store, many_id)
        assert [b[k] for k in OUTCOME] == [getattr(a, k) for k in OUTCOME]
        assert records(store, many_id) == records(store, one_id)
        # two step processes, neither of them this one
        assert len({w["worker"]["pid"] for w in written} | {os.getpid()}) == 3
    finally:
        store.dispose()


def test_a_relaunch_resumes_each_shard_after_its_committed_batches(store, store_url, tmp_path, instance) -> None:
    path = apps_csv(tmp_path, mixed_rows())
    one, many = (f"t-{uuid.uuid4().hex[:10]}" for _ in range(2))
    one_id, many_id = store.ensure_account(one), store.ensure_account(many)
    a = run_import(store, one_id, path, ImportOptions(batch_size=10), failed_rows_dir=tmp_path / "one")
    # a first run planned 2 shards and wrote 3 batches of shard 0, then its worker died (the import left processing)
    options = ImportOptions(batch_size=10, shards=2)
    failed_dir = settings.var_dir() / "imports" / "failed-rows"
    started = run_import(store, many_id, path, options, failed_rows_dir=failed_dir, shards_as_steps=True)
    assert started.status == "processing"
    seen: list[int] = []
    with pytest.raises(shards.Stopped):
        write_import_shard(
            store,
            started.import_id,
            0,
            path,
            options,
            failed_rows_dir=failed_dir,
            on_progress=lambda c: seen.append(c["batches"]),
            should_stop=lambda: len(seen) >= 3,
        )
    assert details(store, started.import_id)["shards"]["committed"] == {"0": 30, "1": 0}

    # shards: 3 now, but a resumed import keeps the count it started with
    result = sharded_import_job.execute_in_process(
        run_config=run_config(path, many, store_url, batch_size=10, shards=3), instance=instance
    )

    assert result.success
    (b,) = list_imports(store, many_id)
    assert (b["id"], b["status"]) == (started.import_id, "completed")
    assert [b[k] for k in OUTCOME] == [getattr(a, k) for k in OUTCOME]
    assert records(store, many_id) == records(store, one_id)
    assert audit_counts(store, b["id"]) == audit_counts(store, a.import_id)
    assert failed_rows(b["failed_rows_path"]) == failed_rows(a.failed_rows_path)
    # shard 0 went on after its 30 rows: it read 13 batches, not 16
    written = {k: result.output_for_node("write_import_shard")[f"shard_{k}"]["counts"] for k in range(2)}
    assert (written[0]["batches"], written[1]["batches"]) == (13, 16)


def _aborting(store, store_url, path, instance) -> tuple[uuid.UUID, dg.ExecuteInProcessResult, dict[int, dict]]:
    """Run `sharded_import_job` on PATH in two shards with error_policy abort (it fails): the
    account, the result and each shard step's counts."""
    account = f"t-{uuid.uuid4().hex[:10]}"
    account_id = store.ensure_account(account)
    result = sharded_import_job.execute_in_process(
        run_config=run_config(path, account, store_url, batch_size=10, shards=2, error_policy="abort"),
        instance=instance,
        raise_on_error=False,
    )
    assert not result.success
    written = {k: result.output_for_node("write_import_shard")[f"shard_{k}"]["counts"] for k in range(2)}
    return account_id, result, written


def test_the_error_policy_aborting_one_shard_step_fails_the_import(store, store_url, tmp_path, instance) -> None:
    account_id, result, written = _aborting(store, store_url, apps_csv(tmp_path, mixed_rows()), instance)
    (h,) = list_imports(store, account_id)
    assert h["status"] == "failed"
    assert "row 18" in h["error_message"] and "error_policy abort" in h["error_message"]
    # the failed-rows file is merged once every shard stopped, and lists the row the import stopped at
    assert "18" in [r["_row"] for r in failed_rows(h["failed_rows_path"])]
    assert not list(settings.var_dir().joinpath("imports", "failed-rows").glob(f".{h['id']}*part"))
    # the shards wrote up to the bad row and ended; the finishing step failed the import naming it
    failures = [e.step_key for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
    assert failures == ["finish_sharded_import"]
    assert sorted(c.get("aborted_at", c.get("stopped_before")) for c in written.values()) == [18, 18]


def test_abort_in_shard_steps_names_the_files_first_bad_row_whichever_step_meets_one_first(
    store, store_url, tmp_path, instance
) -> None:
    # the in-process executor runs shard 1's step first: it meets row 45 and records it; shard 2's
    # step writes its batches up to row 45 and meets row 12 on the way: the import names row 12
    lines = [f"A-{i},F,L,e{i}@x.org,J-1,Applied,2026-01-01,1" for i in range(60)]
    lines[11] = f"A-11,F,L,{_email_of_shard(1)},J-1,Applied,not-a-date,1"
    lines[44] = f"A-44,F,L,{_email_of_shard(0)},J-1,Applied,2026-13-45,1"
    account_id, _, written = _aborting(store, store_url, apps_csv(tmp_path, lines), instance)
    assert (written[0]["aborted_at"], written[1]["aborted_at"]) == (45, 12)
    (h,) = list_imports(store, account_id)
    assert h["status"] == "failed"
    assert "row 12, column 'Applied At'" in h["error_message"] and "error_policy abort" in h["error_message"]
    bad = {r["_row"] for r in failed_rows(h["failed_rows_path"])}
    assert "12" in bad
    # shard 1 wrote its rows of batches 1-4 (rows 1-40; row 45's batch not), shard 2 its rows of batch 1
    emails = [line.split(",")[3] for line in lines]
    shard = [zlib.crc32(e.encode()) % 2 for e in emails]
    expected = sorted(f"A-{i}" for i in range(60) if (i < 40 and shard[i] == 0) or (i < 10 and shard[i] == 1))
    assert sorted(a[0] for a in records(store, account_id)["applications"]) == expected
