"""The outbox drain sends each `send_email` event once, through a real SMTP server on loopback."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from connectors import mail, outbox
from connectors.store import RecordStore, deliveries, schema
from tests.monitoring.smtp import free_port, smtp_server

# real SMTP servers on loopback on both databases: each takes about a second
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)


def _events(
    store: RecordStore, account: uuid.UUID, emails: list[str], *, action: str = "send_email"
) -> list[uuid.UUID]:
    """A candidate per address and a send_email event about each, oldest first."""
    ids = []
    with store.begin() as conn:
        for i, email in enumerate(emails):
            user = uuid.uuid4()
            conn.execute(schema.users.insert().values(id=user, account_id=account, email=email, email_normalized=email))
            event = uuid.uuid4()
            conn.execute(
                schema.automation_events.insert().values(
                    id=event,
                    account_id=account,
                    automation="welcome",
                    action=action,
                    entity_type="candidates",
                    entity_id=user,
                    payload={"config": {"template": "welcome", "subject": "Welcome aboard"}},
                    created_at=T0 + timedelta(seconds=i),
                )
            )
            ids.append(event)
    return ids


def _statuses(store: RecordStore, ids: list[uuid.UUID]) -> list[str]:
    return [outbox.event_status(store, i).status for i in ids]


def _settings(port: int) -> mail.SmtpSettings:
    return mail.SmtpSettings(host="127.0.0.1", port=port, sender="bulkops@example.com", timeout=5)


def _only_mine(store: RecordStore, account: uuid.UUID) -> None:
    # other tests' events share the database: park them so this drain sees only this account's
    ev = schema.automation_events
    with store.begin() as conn:
        conn.execute(
            ev.update()
            .where(ev.c.account_id != account, ev.c.action == "send_email", ev.c.status == "pending")
            .values(status="parked")
        )


def test_each_event_is_sent_once_with_its_subject_and_recipient(store: RecordStore, account: uuid.UUID) -> None:
    ids = _events(store, account, ["a@example.com", "b@example.com", "c@example.com"])
    webhook = _events(store, account, ["w@example.com"], action="webhook")
    _only_mine(store, account)
    with smtp_server() as (inbox, port):
        first = outbox.drain(store, _settings(port))
        again = outbox.drain(store, _settings(port))

    assert (first.sent, again.sent) == (3, 0)
    assert inbox.ids() == [str(i) for i in ids]
    assert [m["To"] for m in inbox.messages] == ["a@example.com", "b@example.com", "c@example.com"]
    assert {m["Subject"] for m in inbox.messages} == {"Welcome aboard"}
    assert _statuses(store, ids) == ["delivered"] * 3
    # webhooks are not the email drain's
    assert _statuses(store, webhook) == ["pending"]
    [attempt] = deliveries.attempts_of(store, outbox.QUEUE, ids[0])
    assert (attempt["outcome"], attempt["attempt"], attempt["target"]) == ("sent", 1, "a@example.com")


def test_a_server_that_is_down_is_retried_with_backoff_then_the_event_is_dead(
    store: RecordStore, account: uuid.UUID
) -> None:
    [event] = _events(store, account, ["down@example.com"])
    _only_mine(store, account)
    policy = deliveries.Policy(max_attempts=3, backoff_seconds=60)
    down = _settings(free_port())
    clock = [T0]

    first = outbox.drain(store, down, policy=policy, now=lambda: clock[0])
    row = outbox.event_status(store, event)
    assert (first.retrying, row.status, row.attempts) == (1, "pending", 1)
    assert row.next_attempt_at.replace(tzinfo=UTC) == T0 + timedelta(seconds=60)
    # not due yet: nothing is tried
    clock[0] = T0 + timedelta(seconds=30)
    assert outbox.drain(store, down, policy=policy, now=lambda: clock[0]).retrying == 0
    clock[0] = T0 + timedelta(seconds=61)
    outbox.drain(store, down, policy=policy, now=lambda: clock[0])
    row = outbox.event_status(store, event)
    # the second wait doubles
    assert row.next_attempt_at.replace(tzinfo=UTC) == clock[0] + timedelta(seconds=120)
    clock[0] += timedelta(seconds=121)
    last = outbox.drain(store, down, policy=policy, now=lambda: clock[0])

    row = outbox.event_status(store, event)
    assert (last.dead, row.status, row.attempts) == (1, "dead", 3)
    assert "gave up after 3 attempts" in row.last_error and "ConnectionRefusedError" in row.last_error
    assert [a["outcome"] for a in deliveries.attempts_of(store, outbox.QUEUE, event)] == ["failed"] * 3
    # the server is back: a dead event stays dead until an operator requeues it
    with smtp_server() as (inbox, port):
        assert outbox.drain(store, _settings(port), policy=policy).sent == 0
        assert deliveries.requeue(store, outbox.QUEUE, [event]) == 1
        assert outbox.drain(store, _settings(port), policy=policy).sent == 1
    assert inbox.ids() == [str(event)]


def test_a_refused_recipient_is_dead_at_once(store: RecordStore, account: uuid.UUID) -> None:
    ids = _events(store, account, ["nobody@example.com", "ok@example.com"])
    _only_mine(store, account)
    with smtp_server() as (inbox, port):
        inbox.refuse.add("nobody@example.com")
        result = outbox.drain(store, _settings(port))
    assert (result.dead, result.sent) == (1, 1)
    assert _statuses(store, ids) == ["dead", "delivered"]
    assert "550" in outbox.event_status(store, ids[0]).last_error


DRAIN = """
import sys
from connectors import mail, outbox
from connectors.store import RecordStore
store = RecordStore(sys.argv[1])
outbox.drain(store, mail.SmtpSettings(host="127.0.0.1", port=int(sys.argv[2]), timeout=60))
"""


@pytest.mark.slow
def test_a_drain_killed_mid_batch_never_sends_an_event_twice(
    store: RecordStore, account: uuid.UUID, store_url: str
) -> None:
    ids = _events(store, account, [f"p{i}@example.com" for i in range(5)])
    _only_mine(store, account)
    with smtp_server() as (inbox, port):
        inbox.hold = "p1@example.com"
        child = subprocess.Popen(
            [sys.executable, "-c", DRAIN, store_url, str(port)], env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=ROOT
        )
        try:
            assert inbox.holding.wait(60), "the drain never reached the second event"
            # killed while the server holds the answer to the second message
            os.kill(child.pid, signal.SIGKILL)
            child.wait(30)
        finally:
            if child.poll() is None:
                child.kill()
        inbox.release.set()
        assert _statuses(store, ids) == ["delivered", "sending", "claimed", "claimed", "claimed"]

        # the next drain, once the dead one's lease is over
        result = outbox.drain(store, _settings(port), policy=deliveries.Policy(lease_seconds=0))

    assert result.sent == 3
    assert sorted(inbox.ids()) == sorted(str(i) for i in ids)
    assert len(inbox.ids()) == len(set(inbox.ids())) == 5
    assert _statuses(store, ids) == ["delivered", "unconfirmed", "delivered", "delivered", "delivered"]
    [interrupted] = deliveries.attempts_of(store, outbox.QUEUE, ids[1])
    assert interrupted["outcome"] == "interrupted"


def test_a_second_drain_does_not_take_rows_another_holds(store: RecordStore, account: uuid.UUID) -> None:
    _events(store, account, ["x@example.com", "y@example.com"])
    _only_mine(store, account)
    token, held = deliveries.claim(store, outbox.QUEUE, limit=10)
    _, other = deliveries.claim(store, outbox.QUEUE, limit=10)
    assert len(held) == 2 and other == []
    assert deliveries.release(store, outbox.QUEUE, token) == 2
    ev = schema.automation_events
    with store.engine.connect() as conn:
        pending = conn.scalar(sa.select(sa.func.count()).where(ev.c.account_id == account, ev.c.status == "pending"))
    assert pending == 2


def test_the_sensor_waits_without_a_server_and_sends_with_one(
    store: RecordStore, account: uuid.UUID, store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dagster as dg

    from pipelines.monitoring.sensors import outbox_email_sensor
    from resources import RecordStoreResource

    [event] = _events(store, account, ["s@example.com"])
    _only_mine(store, account)
    resources = {"record_store": RecordStoreResource(database_url=store_url)}
    monkeypatch.delenv("BULKOPS_SMTP_HOST", raising=False)
    with dg.build_sensor_context(resources=resources) as context:
        idle = outbox_email_sensor(context)
    with smtp_server() as (inbox, port):
        monkeypatch.setenv("BULKOPS_SMTP_HOST", "127.0.0.1")
        monkeypatch.setenv("BULKOPS_SMTP_PORT", str(port))
        with dg.build_sensor_context(resources=resources) as context:
            busy = outbox_email_sensor(context)
    assert "BULKOPS_SMTP_HOST" in idle.skip_message
    assert "'sent': 1" in busy.skip_message and inbox.ids() == [str(event)]
