"""`rollback_import_job`: undoing an import from the Launchpad, recorded on the import's partition."""

from __future__ import annotations

import dagster as dg
import pytest

from connectors.store import RecordStore
from pipelines.definitions import defs
from pipelines.imports.launch import launch_import
from resources import RecordStoreResource
from tests.imports.helpers import apps_csv, count


def _run(instance, store_url, config) -> dg.ExecuteInProcessResult:
    return defs.resolve_job_def("rollback_import_job").execute_in_process(
        run_config={"ops": {"rollback_import_op": {"config": config}}},
        instance=instance,
        raise_on_error=False,
        resources={"record_store": RecordStoreResource(database_url=store_url)},
    )


def test_rollback_job_undoes_the_import_and_marks_its_partition(
    store_url, store: RecordStore, tmp_path, instance, monkeypatch
) -> None:
    monkeypatch.setenv("BULKOPS_DATABASE_URL", store_url)
    slug = f"rbj-{tmp_path.name[-8:]}"
    account = store.ensure_account(slug)
    path = apps_csv(
        tmp_path, ["J-1,Ann,One,ann@x.org,J-1,Applied,2026-01-01,1", "J-2,Bob,Two,bob@x.org,J-1,Offer,2026-01-02,2"]
    )
    run_id, result = launch_import(path, "applications", slug, instance=instance)
    assert result.created == 2

    out = _run(instance, store_url, {"import_id": str(result.import_id), "account": slug})

    assert out.success
    assert out.output_for_node("rollback_import_op")["deleted"]["applications"] == 2
    assert count(store, "applications", account) == 0 and count(store, "users", account) == 0
    partition = instance.get_run_by_id(run_id).tags["dagster/partition"]
    observed = [e for e in out.all_events if e.event_type_value == "ASSET_OBSERVATION"]
    assert [o.partition for o in observed] == [partition]
    assert observed[0].event_specific_data.asset_observation.metadata["status"].value == "rolled_back"


@pytest.mark.parametrize(
    ("import_id", "why"), [("not-a-uuid", "is not an import id"), ("00000000-0000-0000-0000-000000000001", "no import")]
)
def test_rollback_job_fails_clearly_without_retrying(store_url, store: RecordStore, instance, import_id, why) -> None:
    slug = f"rbj-{import_id[-6:]}"
    store.ensure_account(slug)
    out = _run(instance, store_url, {"import_id": import_id, "account": slug})
    assert not out.success
    failure = next(e for e in out.all_events if e.event_type_value == "STEP_FAILURE")
    assert why in failure.step_failure_data.user_failure_data.description
    assert not [e for e in out.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]


@pytest.mark.slow
def test_a_record_store_down_through_every_attempt_fails_the_rollback_saying_what_after_how_many_attempts_and_why(
    instance,
) -> None:
    # nothing listens on port 1: every attempt is refused, a transient fault that persists through the
    # production policy's four attempts (about 22 s of backoff)
    down = "postgresql+psycopg://postgres@127.0.0.1:1/bulkops"
    import_id = "00000000-0000-0000-0000-000000000002"
    out = _run(instance, down, {"import_id": import_id, "account": "demo"})
    assert instance.get_run_by_id(out.run_id).status == dg.DagsterRunStatus.FAILURE
    assert len([e for e in out.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]) == 3
    message = out.failure_data_for_node("rollback_import_op").error.message
    assert f"rollback of import {import_id} failed after 4 attempts: cannot reach the record store at PostgreSQL" in (
        message
    ), message
    assert "nothing of it was applied" in message and "Exceeded max_retries" not in message
