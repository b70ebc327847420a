from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from connectors.store import RecordStore, schema
from pipelines.cli import main

ROOT = Path(__file__).resolve().parents[2]
CSV = "Application ID,First Name,Last Name,Email,Job Code,Job Title\n" + "".join(
    f"CLI-{i},First{i},Last{i},cli{i}@example.com,ENG-1,Engineer\n" for i in range(4)
)


@pytest.fixture
def store_url(sqlite_url: str) -> str:
    # the CLI is plumbing over import_job; test_assets covers both backends
    return sqlite_url


@pytest.fixture
def home(cli_env: Path) -> Path:
    """The Dagster home of the command's environment."""
    return cli_env / "var" / "dagster"


def runs(home: Path) -> list[dg.DagsterRun]:
    with dg.DagsterInstance.from_config(str(home)) as instance:
        return list(instance.get_runs())


def applications(store_url: str) -> int:
    store = RecordStore(store_url)
    account_id = store.account_id(os.environ["BULKOPS_ACCOUNT"])
    with store.engine.connect() as conn:
        return conn.scalar(
            sa.select(sa.func.count())
            .select_from(schema.applications)
            .where(schema.applications.c.account_id == account_id)
        )


def test_bulkops_import_runs_import_job_and_the_run_is_in_the_instance(
    tmp_path: Path, home: Path, store_url: str
) -> None:
    path = tmp_path / "cli.csv"
    path.write_text(CSV)

    out = CliRunner().invoke(main, ["import", str(path), "--entity", "applications", "--batch-size", "2"])

    assert out.exit_code == 0, out.output
    run_id = re.search(r"dagster run: (\S+)", out.output).group(1)
    [run] = runs(home)
    assert (run.run_id, run.job_name, run.status) == (run_id, "import_job", dg.DagsterRunStatus.SUCCESS)
    assert run.tags["dagster/partition"].startswith("applications/cli.csv@")
    assert run.tags["bulkops/kind"] == "import"
    assert "date/time" in out.output and "completed" in out.output
    assert applications(store_url) == 4

    listed = CliRunner().invoke(main, ["imports", "list", "--type", "applications"])
    assert listed.exit_code == 0, listed.output
    assert "cli.csv" in listed.output and "completed" in listed.output


def test_a_dry_run_from_the_cli_writes_nothing(tmp_path: Path, home: Path, store_url: str) -> None:
    path = tmp_path / "dry.csv"
    path.write_text(CSV)

    out = CliRunner().invoke(main, ["import", str(path), "--dry-run"])

    assert out.exit_code == 0, out.output
    assert "dry run" in out.output
    assert applications(store_url) == 0


def test_a_bad_mapping_fails_the_run_and_names_the_column(tmp_path: Path, home: Path) -> None:
    path = tmp_path / "cli.csv"
    path.write_text(CSV)
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text("columns:\n  E-mail Address: email\n")

    out = CliRunner().invoke(main, ["import", str(path), "--mapping", str(mapping)])

    assert out.exit_code == 1
    assert "E-mail Address" in out.output
    [run] = runs(home)
    assert run.status == dg.DagsterRunStatus.FAILURE


def test_rollback_from_the_cli_removes_what_the_import_created(tmp_path: Path, home: Path, store_url: str) -> None:
    path = tmp_path / "cli.csv"
    path.write_text(CSV)
    out = CliRunner().invoke(main, ["import", str(path)])
    assert out.exit_code == 0, out.output
    store = RecordStore(store_url)
    with store.engine.connect() as conn:
        import_id = conn.scalar(
            sa.select(schema.import_history.c.id).where(schema.import_history.c.dagster_run_id == runs(home)[0].run_id)
        )

    rolled = CliRunner().invoke(main, ["imports", "rollback", str(import_id)])

    assert rolled.exit_code == 0, rolled.output
    assert applications(store_url) == 0
    assert "deleted: form_submissions 4, applications 4, candidates 4, jobs 1" in rolled.output
    again = CliRunner().invoke(main, ["imports", "rollback", str(import_id)])
    assert again.exit_code == 1 and "already rolled back" in again.output and "Traceback" not in again.output


def test_bulkops_demo_imports_the_sample_into_a_fresh_var_dir(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BULKOPS_", "DAGSTER_"))}
    env["BULKOPS_VAR_DIR"] = str(tmp_path / "var")

    proc = subprocess.run(
        [sys.executable, "-c", "from pipelines.cli import run; run()", "demo"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "open the UI with: make dev" in proc.stdout
    assert "applications.csv" in proc.stdout
    [run] = runs(tmp_path / "var" / "dagster")
    assert (run.job_name, run.status) == ("import_job", dg.DagsterRunStatus.SUCCESS)
    assert (tmp_path / "var" / "dropzone" / "applications").is_dir()
