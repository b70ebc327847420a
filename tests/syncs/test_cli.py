"""`bulkops syncs` and `bulkops conflicts`: runs through the connection's Dagster job, history, rollback, resolution."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from connectors.store import RecordStore, changes, schema
from pipelines.cli import main
from tests.syncs.conftest import BASE, write_connection

# real databases, Dagster runs and local servers: each test takes seconds
pytestmark = pytest.mark.slow

apps = schema.applications


def test_run_history_conflicts_and_rollback_from_the_command_line(cli_env, pg_source, monkeypatch) -> None:
    import os

    monkeypatch.setenv("HR_DB_URL", pg_source.url)
    monkeypatch.setenv("BULKOPS_SYNCS_DIR", str(cli_env / "syncs"))
    write_connection(cli_env / "syncs", "hr", os.environ["BULKOPS_ACCOUNT"], "HR_DB_URL", conflict="manual")
    pg_source.add(12)
    cli = CliRunner()

    out = cli.invoke(main, ["syncs", "run", "hr"])
    assert out.exit_code == 0, out.output
    assert "completed" in out.output and "12" in out.output
    listed = cli.invoke(main, ["syncs", "list"])
    assert "hr  sql:hr_applications -> applications" in listed.output and "completed" in listed.output

    store = RecordStore(os.environ["BULKOPS_DATABASE_URL"])
    account = store.account_id(os.environ["BULKOPS_ACCOUNT"])
    with store.begin() as c:
        rec = c.execute(sa.select(apps).where(apps.c.account_id == account, apps.c.external_id == "A000002")).one()
        cs = changes.open_change_set(c, account_id=account, kind="document_import", actor="recruiter")
        c.execute(apps.update().where(apps.c.id == rec.id).values(stage="review"))
        changes.write_audit_rows(
            c, cs, "edit", [("applications", rec.id, {"stage": "applied"}, {"stage": "review"})], now=BASE
        )
    pg_source.edit(["A000002"], at=BASE + timedelta(days=30), stage="offer")
    assert cli.invoke(main, ["syncs", "run", "hr"]).exit_code == 0

    listing = cli.invoke(main, ["conflicts", "list", "--sync", "hr"])
    assert "A000002" in listing.output
    conflict_id = listing.output.split()[0]
    shown = cli.invoke(main, ["conflicts", "show", conflict_id])
    assert '"stage": "offer"' in shown.output and '"stage": "review"' in shown.output
    done = cli.invoke(main, ["conflicts", "resolve", conflict_id, "--take", "value", "--set", "stage=interview"])
    assert done.exit_code == 0, done.output
    with store.engine.connect() as c:
        assert c.scalar(sa.select(apps.c.stage).where(apps.c.id == rec.id)) == "interview"
    assert cli.invoke(main, ["conflicts", "list", "--sync", "hr"]).output.strip() == ""

    history = cli.invoke(main, ["syncs", "history", "hr"])
    assert history.exit_code == 0 and len(history.output.strip().splitlines()) == 4
    first_run = history.output.strip().splitlines()[-1].split()[-1]
    undone = cli.invoke(main, ["syncs", "rollback", first_run, "--force"])
    assert undone.exit_code == 0, undone.output
    with store.engine.connect() as c:
        assert c.scalar(sa.select(sa.func.count()).select_from(apps).where(apps.c.account_id == account)) == 0
    missing = cli.invoke(main, ["syncs", "run", "nope"])
    assert missing.exit_code != 0 and "no sync 'nope'" in missing.output
    store.dispose()
    assert uuid.UUID(first_run)
