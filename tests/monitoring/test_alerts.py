"""Failed runs are recorded with their first error and notified once per receiver, retried while it is down."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import dagster as dg
import pytest

from connectors import notify
from connectors.store import RecordStore, alerts, deliveries
from pipelines.bulk.jobs import bulk_job
from pipelines.monitoring.sensors import run_failure_alert_sensor
from resources import RecordStoreResource
from tests.monitoring.smtp import smtp_server

# real failed runs and real servers: seconds each
pytestmark = pytest.mark.slow


class Receiver:
    """A webhook receiver on loopback: answers 503 to the first `down` posts, then 200; keeps what it got."""

    def __init__(self) -> None:
        self.down = 0
        self.posts: list[dict] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if receiver.down > 0:
                    receiver.down -= 1
                    self.send_response(503)
                else:
                    receiver.posts.append(body)
                    self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()


def _failed_run(instance: dg.DagsterInstance, store_url: str) -> tuple[dg.DagsterRun, dg.DagsterEvent]:
    missing = str(uuid.uuid4())
    result = bulk_job.execute_in_process(
        run_config={"ops": {"apply_bulk_job": {"config": {"bulk_job_id": missing}}}},
        instance=instance,
        resources={"record_store": RecordStoreResource(database_url=store_url)},
        tags={"bulkops/kind": "bulk_job", "bulkops/account": "acme", "bulkops/bulk_job_id": missing},
        raise_on_error=False,
    )
    assert not result.success
    return instance.get_run_by_id(result.run_id), result.get_run_failure_event()


def _evaluate(instance: dg.DagsterInstance, run: dg.DagsterRun, event: dg.DagsterEvent, store_url: str) -> None:
    context = dg.build_run_status_sensor_context(
        sensor_name="run_failure_alert_sensor",
        dagster_event=event,
        dagster_instance=instance,
        dagster_run=run,
        resources={"record_store": RecordStoreResource(database_url=store_url)},
    )
    with context.for_run_failure() as ctx:
        run_failure_alert_sensor(ctx)


def test_a_failed_run_is_recorded_and_each_receiver_notified_once(
    store: RecordStore, store_url: str, instance: dg.DagsterInstance, receiver: Receiver, monkeypatch
) -> None:
    with smtp_server() as (inbox, port):
        monkeypatch.setenv("BULKOPS_ALERT_WEBHOOK_URLS", receiver.url)
        monkeypatch.setenv("BULKOPS_ALERT_EMAILS", "ops@example.com")
        monkeypatch.setenv("BULKOPS_SMTP_HOST", "127.0.0.1")
        monkeypatch.setenv("BULKOPS_SMTP_PORT", str(port))
        monkeypatch.setenv("BULKOPS_DAGSTER_UI_URL", "http://dagster.example")
        run, event = _failed_run(instance, store_url)

        _evaluate(instance, run, event, store_url)
        _evaluate(instance, run, event, store_url)

    alert = alerts.get(store, run.run_id)
    assert alert["job_name"] == "bulk_job" and alert["kind"] == "bulk_job" and alert["account"] == "acme"
    assert alert["run_status"] == "FAILURE"
    assert "apply_bulk_job" in alert["reason"] and alert["run_url"] == f"http://dagster.example/runs/{run.run_id}"
    assert {(d["channel"], d["status"], d["attempts"]) for d in alert["deliveries"]} == {
        ("webhook", "sent", 1),
        ("email", "sent", 1),
    }
    # deduplicated: two evaluations, one post and one email
    [post] = receiver.posts
    assert post["run_id"] == run.run_id and post["kind"] == "bulk_job" and post["reason"] == alert["reason"]
    assert post["run_url"] == alert["run_url"]
    [email] = inbox.messages
    assert email["To"] == "ops@example.com" and run.run_id[:8] in email["Subject"]
    assert alert["run_url"] in email.get_payload()


def test_a_receiver_that_is_down_is_retried_with_backoff(store: RecordStore, receiver: Receiver, monkeypatch) -> None:
    receiver.down = 2
    run_id = uuid.uuid4().hex
    t0 = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)
    clock = [t0]
    policy = deliveries.Policy(max_attempts=5, backoff_seconds=10)
    assert alerts.record(
        store,
        run_id=run_id,
        job_name="import_job",
        run_status="FAILURE",
        reason="boom",
        run_url=None,
        targets=[("webhook", receiver.url)],
        kind="import",
    )

    tries = []
    for step in (0, 5, 10, 20, 40):
        clock[0] = t0 + timedelta(seconds=step)
        tries.append(notify.deliver(store, smtp=None, run_id=run_id, policy=policy, now=lambda: clock[0]).as_dict())

    # down at 0 s (retry after 10 s), not due at 5 s, down at 10 s (retry after 20 s more), not due at 20 s, sent at 40 s
    assert [t["sent"] for t in tries] == [0, 0, 0, 0, 1]
    assert [t["retrying"] for t in tries] == [1, 0, 1, 0, 0]
    [delivery] = alerts.get(store, run_id)["deliveries"]
    assert (delivery["status"], delivery["attempts"]) == ("sent", 3)
    attempts = deliveries.attempts_of(store, deliveries.ALERTS, delivery["id"])
    assert [a["outcome"] for a in attempts] == ["failed", "failed", "sent"]
    assert "503" in attempts[0]["error"]
    assert len(receiver.posts) == 1


def test_a_run_whose_worker_died_is_recorded_as_crashed(
    store: RecordStore, store_url: str, instance: dg.DagsterInstance, monkeypatch
) -> None:
    monkeypatch.delenv("BULKOPS_ALERT_WEBHOOK_URLS", raising=False)
    monkeypatch.delenv("BULKOPS_ALERT_EMAILS", raising=False)
    run, event = _failed_run(instance, store_url)
    # what Dagster writes on a run whose worker process vanished
    instance.add_run_tags(run.run_id, {"dagster/failure_reason": "UNEXPECTED_TERMINATION"})

    _evaluate(instance, instance.get_run_by_id(run.run_id), event, store_url)

    alert = alerts.get(store, run.run_id)
    assert alert["run_status"] == "CRASHED" and alert["deliveries"] == []
