"""Secrets never reach Dagster's run storage, logs, metadata or error messages.

The record store's password: a run launched by bulkops reads it from its own environment, never
from run config (which the Dagster UI shows to everyone who can open a run). Sync connection
secrets: tests/syncs/test_config.py, test_dagster.py and test_http.py; API tokens: tests/api/test_tokens.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import dagster as dg
import pytest
import sqlalchemy as sa

from connectors.store import RecordStore
from pipelines.bulk import launch, service
from pipelines.definitions import defs
from resources import shown_url, store_run_config

pytestmark = pytest.mark.postgres

SECRET = "hunter2-s3cret"


def _with_password(url: str) -> str:
    # the server trusts local connections: the password is carried, never checked
    return sa.make_url(url).set(password=SECRET).render_as_string(hide_password=False)


def test_a_url_with_a_password_goes_into_run_config_by_its_variables_name() -> None:
    plain = "postgresql+psycopg://bulkops@db:5432/bulkops"
    assert store_run_config(plain) == {"record_store": {"config": {"database_url": plain}}}
    assert store_run_config("sqlite:////srv/bulkops.db")["record_store"]["config"]["database_url"].startswith("sqlite")
    secret = "postgresql+psycopg://bulkops:pw-123@db:5432/bulkops"
    config = store_run_config(secret)["record_store"]["config"]
    assert config == {
        "database_url": {"env": "BULKOPS_DATABASE_URL"},
        "expect_database": "postgresql+psycopg://bulkops:***@db:5432/bulkops",
    }
    assert "pw-123" not in repr(config) and shown_url(secret) == config["expect_database"]
    assert store_run_config(None) == {}


def test_a_bulk_job_run_on_a_password_url_keeps_the_password_out_of_dagster(
    pg_url: str, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = _with_password(pg_url)
    store = RecordStore(url)
    try:
        account = store.ensure_account(f"t-{uuid.uuid4().hex[:10]}")
        job = service.create_job(
            store, account, created_by=None, entity_type="jobs", operation="tags_add",
            entity_ids=[uuid.uuid4()], params={"tags": ["x"]},
        )  # fmt: skip
        job_id = uuid.UUID(job["id"])
        monkeypatch.setenv("BULKOPS_DATABASE_URL", url)
        with dg.DagsterInstance.ephemeral(tempdir=str(tmp_path)) as instance:
            result = defs.resolve_job_def("bulk_job").execute_in_process(
                run_config=launch.run_config_for(job_id, url), instance=instance, raise_on_error=False
            )
            # the run reached the store through the worker's own environment: the job ran (its one
            # record does not exist, so it failed that record)
            assert service.get_job(store, account, job_id)["status"] == "failed"
            run = instance.get_run_by_id(result.run_id)
            stored = repr(run.run_config) + repr(run.tags)
            logged = " ".join(repr(e) for e in instance.all_logs(result.run_id))
            assert "hunter2" not in stored and "hunter2" not in logged
            assert "BULKOPS_DATABASE_URL" in stored

            # a worker whose environment names another database fails at once, saying so
            monkeypatch.setenv("BULKOPS_DATABASE_URL", _with_password(pg_url.rsplit("/", 1)[0] + "/elsewhere"))
            other = defs.resolve_job_def("bulk_job").execute_in_process(
                run_config=launch.run_config_for(job_id, url), instance=instance, raise_on_error=False
            )
            assert not other.success
            message = " ".join(repr(e) for e in instance.all_logs(other.run_id))
            assert "launched for the record store" in message and "/elsewhere" in message
            assert "hunter2" not in message
            assert not [e for e in other.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    finally:
        store.dispose()


@pytest.mark.parametrize("where", ["127.0.0.1:1/bulkops", "127.0.0.1:5432/no_such_database"])
def test_the_cli_names_an_unreachable_store_without_its_password(where: str, tmp_path) -> None:
    env = {"BULKOPS_DATABASE_URL": f"postgresql+psycopg://bob:{SECRET}@{where}", "DAGSTER_HOME": str(tmp_path)}
    for debug in ("0", "1"):
        done = subprocess.run(
            [sys.executable, "-m", "pipelines.cli", "imports", "list"],
            env={**_base_env(), **env, "BULKOPS_DEBUG": debug},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 1
        assert where.split("/")[0] in done.stderr and "hunter2" not in done.stdout + done.stderr


def _base_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("BULKOPS_")}
