"""Webhook automations delivered to a real local HTTP server."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import sqlalchemy as sa

from connectors import webhooks
from connectors.store import schema
from pipelines.bulk import launch, service
from pipelines.definitions import defs


class _Server:
    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.received: list[dict] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                owner.received.append(body)
                status = owner.statuses.pop(0) if owner.statuses else 200
                self.send_response(status)
                self.end_headers()
                self.wfile.write(b"ok" if status < 400 else b"boom")

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)


@pytest.fixture
def server_factory() -> Iterator:
    servers: list[_Server] = []

    def make(statuses: list[int]) -> _Server:
        s = _Server(list(statuses))
        s.thread.start()
        servers.append(s)
        return s

    yield make
    for s in servers:
        s.httpd.shutdown()
        s.httpd.server_close()


@pytest.mark.parametrize(
    ("statuses", "ok", "attempts"),
    [
        pytest.param([200], True, 1, id="first-try"),
        pytest.param([500, 200], True, 2, id="transient-500-then-success"),
        pytest.param([503, 502, 500], False, 3, id="gives-up"),
        pytest.param([404], False, 1, id="client-error-not-retried"),
    ],
)
def test_deliver_retries_transient_failures_with_backoff(server_factory, statuses, ok, attempts) -> None:
    server = server_factory(statuses)
    waits: list[float] = []
    result = webhooks.deliver(server.url, {"a": 1}, max_attempts=3, backoff_seconds=1.0, sleep=waits.append)
    assert (result.ok, result.attempts) == (ok, attempts)
    assert len(server.received) == attempts and server.received[0] == {"a": 1}
    # exponential backoff with jitter: 1s then 2s (x0.5..1.5)
    assert len(waits) == attempts - 1
    assert all(0.5 * 2**n <= w <= 1.5 * 2**n for n, w in enumerate(waits))


def test_bulk_trigger_delivers_webhooks_after_a_transient_500(
    seed, store, store_url, account, instance, server_factory
) -> None:
    server = server_factory([500, 200])
    seed.automation("notify-crm", "webhook", {"url": server.url})
    ids = seed.applications(1)
    job = service.create_job(
        store,
        account,
        created_by=None,
        entity_type="applications",
        operation="trigger_automations",
        entity_ids=ids,
        params={"automations": ["notify-crm"]},
    )
    result = defs.resolve_job_def("bulk_job").execute_in_process(
        run_config=launch.run_config_for(uuid.UUID(job["id"]), store_url), instance=instance
    )
    assert result.success
    ev = schema.automation_events
    with store.engine.connect() as conn:
        event = conn.execute(sa.select(ev).where(ev.c.bulk_job_id == uuid.UUID(job["id"]))).one()
    assert (event.status, event.attempts, event.delivered_at is not None) == ("delivered", 2, True)
    assert [r["entity_id"] for r in server.received] == [str(ids[0]), str(ids[0])]
    assert server.received[-1]["automation"] == "notify-crm"
