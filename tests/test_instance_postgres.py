"""The production dagster.yaml runs for real against PostgreSQL (dagster-postgres)."""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]


@dg.op
def hello() -> int:
    return 1


@dg.job
def trivial_job() -> None:
    hello()


@pytest.mark.postgres
def test_production_instance_stores_runs_in_postgresql(
    pg_database_factory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = sa.make_url(pg_database_factory())
    monkeypatch.setenv("DAGSTER_PG_HOST", url.host)
    monkeypatch.setenv("DAGSTER_PG_USER", url.username)
    monkeypatch.setenv("DAGSTER_PG_PASSWORD", url.password or "")
    monkeypatch.setenv("DAGSTER_PG_DB", url.database)
    shutil.copy(ROOT / "deploy" / "dagster.yaml", tmp_path / "dagster.yaml")

    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        # a queued run waits at most about a second (Dagster's default is 5 s)
        assert instance.run_coordinator.dequeue_interval_seconds == 1
        result = trivial_job.execute_in_process(instance=instance)
        assert result.success
        assert instance.get_run_by_id(result.run_id).status == dg.DagsterRunStatus.SUCCESS

    engine = sa.create_engine(url.set(drivername="postgresql+psycopg"))
    with engine.connect() as conn:
        assert conn.scalar(sa.text("SELECT count(*) FROM runs WHERE run_id = :r"), {"r": result.run_id}) == 1
    engine.dispose()
