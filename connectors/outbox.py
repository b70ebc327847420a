"""The outbox drain: `send_email` automation events delivered through SMTP, each at most once.

Events are claimed in a committed transaction before anything is sent, each send is recorded
before and after it (`connectors/store/deliveries.py`), failures are retried with backoff and
end `dead` after `Policy.max_attempts`; an event whose send was interrupted is `unconfirmed`,
never sent twice.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from connectors import mail
from connectors.store import RecordStore, deliveries, schema

QUEUE = deliveries.OUTBOX_EMAILS


@dataclass
class DrainResult:
    sent: int = 0
    retrying: int = 0
    dead: int = 0
    skipped: int = 0
    released: int = 0
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"sent": self.sent, "retrying": self.retrying, "dead": self.dead, "released": self.released}


def _payload(event: sa.Row) -> dict[str, Any]:
    payload = event.payload or {}
    return payload if isinstance(payload, dict) else {}


def recipient(conn: sa.Connection, event: sa.Row) -> str | None:
    """Who the email goes to: the payload's `to`, else the candidate the event's record belongs to."""
    payload = _payload(event)
    config = payload.get("config") if isinstance(payload.get("config"), dict) else {}
    explicit = payload.get("to") or config.get("to")
    if explicit:
        return str(explicit)
    users, apps, contracts = schema.users, schema.applications, schema.contracts
    if event.entity_type == "candidates":
        q = sa.select(users.c.email).where(users.c.id == event.entity_id)
    elif event.entity_type == "applications":
        q = sa.select(users.c.email).join(apps, apps.c.candidate_id == users.c.id).where(apps.c.id == event.entity_id)
    elif event.entity_type == "contracts":
        q = (
            sa.select(users.c.email)
            .join(apps, apps.c.candidate_id == users.c.id)
            .join(contracts, contracts.c.application_id == apps.c.id)
            .where(contracts.c.id == event.entity_id)
        )
    else:
        return None
    return conn.scalar(q.where(users.c.account_id == event.account_id))


def content(event: sa.Row) -> tuple[str, str]:
    """(subject, body) of the event's email."""
    payload = _payload(event)
    config = payload.get("config") if isinstance(payload.get("config"), dict) else {}
    template = payload.get("template") or config.get("template") or event.automation
    subject = payload.get("subject") or config.get("subject") or str(template).replace("_", " ").capitalize()
    lines = [str(payload.get("message") or config.get("body") or f"{subject}.")]
    if payload.get("fields"):
        lines.append("Please provide: " + ", ".join(map(str, payload["fields"])) + ".")
    lines.append(f"(reference {event.entity_type} {event.entity_id}, template {template})")
    return str(subject), "\n\n".join(lines)


def drain(
    store: RecordStore,
    settings: mail.SmtpSettings,
    *,
    limit: int = 100,
    policy: deliveries.Policy = deliveries.DEFAULT_POLICY,
    now: Callable[[], datetime] | None = None,
    budget_seconds: float = 40.0,
) -> DrainResult:
    """Send up to LIMIT due `send_email` events; stops claiming more after BUDGET_SECONDS."""
    clock = now or deliveries.utcnow
    result = DrainResult()
    started = time.monotonic()
    token, events = deliveries.claim(store, QUEUE, limit=limit, now=clock(), policy=policy)
    try:
        with mail.Mailer(settings) as mailer:
            for event in events:
                if time.monotonic() - started > budget_seconds:
                    break
                with store.engine.connect() as conn:
                    to = recipient(conn, event)
                attempt = deliveries.start(store, QUEUE, event, token, target=to, now=clock())
                if attempt is None:
                    result.skipped += 1
                    continue
                if not to:
                    error, permanent = f"no email address for {event.entity_type} {event.entity_id}", True
                else:
                    subject, body = content(event)
                    try:
                        mailer.send(to, subject, body, message_id=str(event.id))
                        error, permanent = None, False
                    except mail.SendFailed as exc:
                        error, permanent = str(exc), exc.permanent
                status = deliveries.finish(
                    store, QUEUE, event, attempt, error=error, permanent=permanent, policy=policy, now=clock()
                )
                if status == QUEUE.sent_status:
                    result.sent += 1
                elif status == "dead":
                    result.dead += 1
                    result.errors.append(f"{event.id}: {error}")
                else:
                    result.retrying += 1
                    result.errors.append(f"{event.id}: {error}")
    finally:
        result.released = deliveries.release(store, QUEUE, token)
    return result


def event_status(store: RecordStore, event_id: uuid.UUID) -> sa.Row:
    ev = schema.automation_events
    with store.engine.connect() as conn:
        return conn.execute(
            sa.select(ev.c.status, ev.c.attempts, ev.c.last_error, ev.c.next_attempt_at, ev.c.delivered_at).where(
                ev.c.id == event_id
            )
        ).one()
