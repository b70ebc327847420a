from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from connectors.store import RecordStore, make_engine, migrate
from connectors.store import schema as s
from pipelines.cli import main


@pytest.fixture
def var(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> RecordStore:
    monkeypatch.setenv("BULKOPS_VAR_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "var" / "dagster"))
    monkeypatch.delenv("BULKOPS_DAGSTER_GRAPHQL_URL", raising=False)
    engine = make_engine()
    migrate.upgrade(engine)
    engine.dispose()
    return RecordStore()


def _seed(store: RecordStore, account: uuid.UUID, n: int) -> list[uuid.UUID]:
    cand, ids = uuid.uuid4(), [uuid.uuid4() for _ in range(n)]
    with store.begin() as conn:
        conn.execute(s.users.insert().values(id=cand, account_id=account, email_normalized=f"{cand.hex}@x.io"))
        conn.execute(s.applications.insert(), [{"id": i, "account_id": account, "candidate_id": cand} for i in ids])
    return ids


def _statuses(store: RecordStore, ids: list[uuid.UUID]) -> list[str]:
    with store.begin() as conn:
        return [r.status for r in conn.execute(sa.select(s.applications.c.status).where(s.applications.c.id.in_(ids)))]


def test_bulk_jobs_create_runs_the_bulk_job_and_rollback_restores_it(var: RecordStore, tmp_path: Path) -> None:
    account = var.ensure_account("demo")
    ids = _seed(var, account, 4)
    ids_file = tmp_path / "ids.csv"
    ids_file.write_text("id\n" + "\n".join(map(str, ids)) + "\n" + str(uuid.uuid4()) + "\n")
    runner = CliRunner()

    out = runner.invoke(
        main,
        [
            "bulk-jobs",
            "create",
            "applications",
            "status_update",
            "--ids",
            str(ids_file),
            "--params",
            '{"status": "rejected"}',
        ],
    )
    assert out.exit_code == 0, out.output
    job = json.loads(out.output[out.output.index("{") : out.output.rindex("}") + 1])
    assert (job["status"], job["total_count"], job["processed_count"], job["failed_count"]) == ("completed", 5, 5, 1)
    assert _statuses(var, ids) == ["rejected"] * 4

    failed = runner.invoke(main, ["bulk-jobs", "failed", job["id"]])
    assert "not found" in failed.output and failed.output.count("\n") == 2

    back = runner.invoke(main, ["bulk-jobs", "rollback", job["id"]])
    assert back.exit_code == 0, back.output
    assert _statuses(var, ids) == ["active"] * 4
    listed = runner.invoke(main, ["bulk-jobs", "list"])
    assert listed.output.count("completed") == 2


def test_bulk_jobs_create_names_a_bad_id_line(var: RecordStore, tmp_path: Path) -> None:
    var.ensure_account("demo")
    ids_file = tmp_path / "ids.txt"
    ids_file.write_text(f"{uuid.uuid4()}\nnot-a-uuid\n")
    out = CliRunner().invoke(main, ["bulk-jobs", "create", "applications", "delete", "--ids", str(ids_file)])
    assert out.exit_code == 2 and "line 2: 'not-a-uuid' is not a uuid" in out.output


def test_a_service_error_prints_one_line(var: RecordStore) -> None:
    var.ensure_account("demo")
    out = CliRunner().invoke(main, ["bulk-jobs", "get", str(uuid.uuid4())])
    assert out.exit_code == 1 and out.output.startswith("error: no bulk job ") and "Traceback" not in out.output


def test_the_former_group_name_still_runs_but_is_not_listed(var: RecordStore) -> None:
    # "jobs" are job postings; `bulkops jobs` keeps working for scripts written against it
    var.ensure_account("demo")
    job_id = str(uuid.uuid4())
    old = CliRunner().invoke(main, ["jobs", "get", job_id])
    new = CliRunner().invoke(main, ["bulk-jobs", "get", job_id])
    assert (
        (old.exit_code, old.output)
        == (new.exit_code, new.output)
        == (1, f"error: no bulk job {job_id} in this account (bulkops bulk-jobs list shows its bulk jobs)\n")
    )
    listed = CliRunner().invoke(main, ["--help"]).output
    assert "bulk-jobs" in listed and not re.search(r"^\s+jobs\b", listed, re.MULTILINE)
