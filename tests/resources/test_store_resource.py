from __future__ import annotations

from pathlib import Path

import dagster as dg

from resources import RecordStoreResource


@dg.op
def count_accounts(record_store: RecordStoreResource) -> int:
    import sqlalchemy as sa

    with record_store.store.begin() as conn:
        return conn.scalar(sa.text("SELECT count(*) FROM accounts"))


@dg.job(op_retry_policy=dg.RetryPolicy(max_retries=2))
def probe_job() -> None:
    count_accounts()


def test_a_run_against_a_stale_schema_fails_once_naming_the_command(
    tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    url = f"sqlite:///{tmp_path / 'stale.db'}"
    result = probe_job.execute_in_process(
        instance=instance, resources={"record_store": RecordStoreResource(database_url=url)}, raise_on_error=False
    )
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "run `bulkops db upgrade`" in failure.step_failure_data.error.message + (
        failure.step_failure_data.user_failure_data.description or ""
    )
    assert not [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]


def test_a_run_against_a_migrated_store_reads_it(store_url: str, instance: dg.DagsterInstance) -> None:
    result = probe_job.execute_in_process(
        instance=instance, resources={"record_store": RecordStoreResource(database_url=store_url)}
    )
    assert result.success and result.output_for_node("count_accounts") >= 0
