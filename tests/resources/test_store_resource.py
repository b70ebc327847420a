import uuid
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from connectors.store import RecordStore
from connectors.store import schema as s
from resources import RecordStoreResource


class AccountConfig(dg.Config):
    slug: str


@dg.op
def add_account(config: AccountConfig, record_store: RecordStoreResource) -> str:
    account_id = uuid.uuid4()
    with record_store.store.begin() as conn:
        conn.execute(s.accounts.insert().values(id=account_id, slug=config.slug, name=config.slug))
    return str(account_id)


@dg.op
def read_account(account_id: str, record_store: RecordStoreResource) -> str:
    with record_store.store.begin() as conn:
        return conn.scalar(sa.select(s.accounts.c.slug).where(s.accounts.c.id == uuid.UUID(account_id)))


@dg.job(op_retry_policy=dg.RetryPolicy(max_retries=2))
def round_trip_job() -> None:
    read_account(add_account())


def _config(slug: str) -> dg.RunConfig:
    return dg.RunConfig(ops={"add_account": AccountConfig(slug=slug)})


def test_a_run_against_a_stale_schema_fails_once_naming_the_command(
    tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    url = f"sqlite:///{tmp_path / 'stale.db'}"
    result = round_trip_job.execute_in_process(
        run_config=_config("stale"),
        instance=instance,
        resources={"record_store": RecordStoreResource(database_url=url)},
        raise_on_error=False,
    )
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    data = failure.step_failure_data
    assert "run `bulkops db upgrade`" in data.error.message + (data.user_failure_data.description or "")
    assert not [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]


def test_a_run_writes_and_reads_the_store_it_is_given(store_url: str, instance: dg.DagsterInstance) -> None:
    slug = f"t-{uuid.uuid4().hex[:10]}"
    result = round_trip_job.execute_in_process(
        run_config=_config(slug),
        instance=instance,
        resources={"record_store": RecordStoreResource(database_url=store_url)},
    )
    assert result.output_for_node("read_account") == slug
    # the row is in that database, committed, for anyone who opens it
    store = RecordStore(store_url)
    try:
        assert store.account_id(slug) == uuid.UUID(result.output_for_node("add_account"))
    finally:
        store.dispose()


def test_without_a_url_a_run_opens_the_store_named_by_the_environment_at_run_time(
    sqlite_url: str, instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    resource = RecordStoreResource()  # built before the environment names the store, as a code location is
    monkeypatch.setenv("BULKOPS_DATABASE_URL", sqlite_url)
    slug = f"t-{uuid.uuid4().hex[:10]}"
    result = round_trip_job.execute_in_process(
        run_config=_config(slug), instance=instance, resources={"record_store": resource}
    )
    assert result.output_for_node("read_account") == slug
    store = RecordStore(sqlite_url)
    try:
        assert store.account_id(slug)
    finally:
        store.dispose()
