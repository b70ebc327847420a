"""`bulkops outbox` and `bulkops alerts`: what an operator sees and re-queues."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner

from connectors.store import RecordStore, alerts, schema
from pipelines.cli import main
from tests.monitoring.smtp import smtp_server
from tests.monitoring.test_outbox import _events, _only_mine

# real imports, runs and SMTP servers on both databases: each takes about a second
pytestmark = pytest.mark.slow


def test_an_operator_lists_drains_and_requeues_outbox_emails(store: RecordStore, cli_env: Path, monkeypatch) -> None:
    account = store.account_id(os.environ["BULKOPS_ACCOUNT"])
    [event] = _events(store, account, ["op@example.com"])
    _only_mine(store, account)
    with store.begin() as conn:
        ev = schema.automation_events
        conn.execute(ev.update().where(ev.c.id == event).values(status="unconfirmed", attempts=1, last_error="stopped"))

    listed = CliRunner().invoke(main, ["outbox", "list", "--status", "unconfirmed"])
    no_server = CliRunner().invoke(main, ["outbox", "drain"])
    requeued = CliRunner().invoke(main, ["outbox", "requeue", str(event)])
    with smtp_server() as (inbox, port):
        monkeypatch.setenv("BULKOPS_SMTP_HOST", "127.0.0.1")
        monkeypatch.setenv("BULKOPS_SMTP_PORT", str(port))
        drained = CliRunner().invoke(main, ["outbox", "drain"])

    assert f"{event}  unconfirmed  1  stopped" in listed.output
    assert no_server.exit_code != 0 and "BULKOPS_SMTP_HOST" in no_server.output
    assert "re-queued 1 of 1" in requeued.output
    assert drained.exit_code == 0 and '"sent": 1' in drained.output and inbox.ids() == [str(event)]


def test_alerts_list_shows_the_run_its_error_and_each_notification(store: RecordStore, cli_env: Path) -> None:
    run_id = uuid.uuid4().hex
    alerts.record(
        store,
        run_id=run_id,
        job_name="import_job",
        run_status="CRASHED",
        reason="worker killed",
        run_url=f"http://ui/runs/{run_id}",
        targets=[("webhook", "http://hook.example/x")],
        kind="import",
    )
    out = CliRunner().invoke(main, ["alerts", "list", "--limit", "100"])
    assert out.exit_code == 0
    assert f"import_job  import  -  CRASHED  http://ui/runs/{run_id}" in out.output
    assert "worker killed" in out.output and "-> webhook http://hook.example/x: pending (0 attempts)" in out.output
