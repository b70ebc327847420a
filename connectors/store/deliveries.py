"""At-most-once delivery queues in the record store: the outbox's emails and the alerts' notifications.

A row goes `pending → claimed → sending → sent`, or back to `pending` with a later
`next_attempt_at` (exponential backoff) when the receiver is down, or to `dead` after
`max_attempts` or a permanent refusal. Each step is its own committed transaction:

1. **claim**: a batch of due rows becomes `claimed` under a fresh token, in one statement (with
   `FOR UPDATE SKIP LOCKED` on PostgreSQL), so two drains never hold the same row;
2. **start**: just before the send, the row becomes `sending` (attempts + 1) and a
   `delivery_attempts` row records the attempt, in one transaction;
3. **finish**: after the send, the row is `sent`, `pending` again or `dead`, and the attempt row
   gets its outcome.

A drain killed between 1 and 2 leaves rows `claimed`: after the lease they go back to `pending`
(nothing was sent). A drain killed between 2 and 3 leaves one row `sending`: whether the
receiver got it is unknown, so after the lease it becomes `unconfirmed` and is **not** sent
again (no event is ever sent twice); an operator re-queues it by hand (`requeue`).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from connectors.store import RecordStore, schema

attempts_t = schema.delivery_attempts


@dataclass(frozen=True)
class Queue:
    """A table of deliveries (`automation_events` of one action, `alert_deliveries`)."""

    table: sa.Table
    subject: str
    sent_status: str
    sent_at: str
    target_column: str | None = None
    where: Any = None

    def due(self, now: datetime) -> sa.ColumnElement[bool]:
        t = self.table
        cond = (t.c.status == "pending") & (t.c.next_attempt_at.is_(None) | (t.c.next_attempt_at <= now))
        return cond if self.where is None else cond & self.where


@dataclass(frozen=True)
class Policy:
    """How often and how patiently to retry."""

    max_attempts: int = 5
    backoff_seconds: float = 30.0
    max_backoff_seconds: float = 3600.0
    # a claim older than this belongs to a drain that died
    lease_seconds: float = 600.0

    def delay(self, attempts: int) -> timedelta:
        return timedelta(seconds=min(self.max_backoff_seconds, self.backoff_seconds * 2 ** max(0, attempts - 1)))


DEFAULT_POLICY = Policy()

OUTBOX_EMAILS = Queue(
    schema.automation_events,
    subject="automation_event",
    sent_status="delivered",
    sent_at="delivered_at",
    where=schema.automation_events.c.action == "send_email",
)
ALERTS = Queue(schema.alert_deliveries, subject="alert", sent_status="sent", sent_at="sent_at", target_column="target")


def utcnow() -> datetime:
    return datetime.now(UTC)


def recover(conn: sa.Connection, queue: Queue, *, now: datetime, lease_seconds: float) -> dict[str, int]:
    """Rows of dead drains: `claimed` back to `pending`; `sending` to `unconfirmed` (never resent)."""
    t = queue.table
    stale = t.c.claimed_at < now - timedelta(seconds=lease_seconds)
    where = [stale] if queue.where is None else [stale, queue.where]
    released = conn.execute(
        t.update().where(t.c.status == "claimed", *where).values(status="pending", claim_token=None, claimed_at=None)
    ).rowcount
    lost = conn.execute(sa.select(t.c.id).where(t.c.status == "sending", *where)).scalars().all()
    if lost:
        reason = "the drain stopped while sending: not sent again, as the receiver may have it (requeue to resend)"
        conn.execute(
            t.update().where(t.c.id.in_(lost)).values(status="unconfirmed", claim_token=None, last_error=reason)
        )
        conn.execute(
            attempts_t.update()
            .where(
                attempts_t.c.subject == queue.subject,
                attempts_t.c.subject_id.in_([str(i) for i in lost]),
                attempts_t.c.outcome == "sending",
            )
            .values(outcome="interrupted", finished_at=now, error=reason)
        )
    return {"released": released, "unconfirmed": len(lost)}


def claim(
    store: RecordStore, queue: Queue, *, limit: int, now: datetime | None = None, policy: Policy = Policy()
) -> tuple[str, list[sa.Row]]:
    """Claim up to LIMIT due rows for this drain: (its token, the rows), committed before any send."""
    now = now or utcnow()
    token = uuid.uuid4().hex
    t = queue.table
    with store.begin() as conn:
        recover(conn, queue, now=now, lease_seconds=policy.lease_seconds)
        order = t.c.created_at if "created_at" in t.c else t.c.id
        picked = sa.select(t.c.id).where(queue.due(now)).order_by(order).limit(limit)
        if conn.dialect.name == "postgresql":
            picked = picked.with_for_update(skip_locked=True)
        conn.execute(
            t.update()
            .where(t.c.id.in_(picked.scalar_subquery()), t.c.status == "pending")
            .values(status="claimed", claim_token=token, claimed_at=now)
        )
        rows = conn.execute(sa.select(t).where(t.c.claim_token == token).order_by(order)).all()
    return token, rows


def start(
    store: RecordStore, queue: Queue, row: sa.Row, token: str, *, target: str | None, now: datetime | None = None
) -> int | None:
    """Mark ROW `sending` and record the attempt, committed; None when this drain no longer holds it."""
    now = now or utcnow()
    t = queue.table
    with store.begin() as conn:
        moved = conn.execute(
            t.update()
            .where(t.c.id == row.id, t.c.claim_token == token, t.c.status == "claimed")
            .values(status="sending", attempts=t.c.attempts + 1, claimed_at=now)
        ).rowcount
        if not moved:
            return None
        return conn.execute(
            attempts_t.insert()
            .values(
                subject=queue.subject,
                subject_id=str(row.id),
                target=(target or "")[:500] or None,
                attempt=row.attempts + 1,
                started_at=now,
                outcome="sending",
            )
            .returning(attempts_t.c.id)
        ).scalar_one()


def finish(
    store: RecordStore,
    queue: Queue,
    row: sa.Row,
    attempt_id: int,
    *,
    error: str | None,
    permanent: bool = False,
    policy: Policy = Policy(),
    now: datetime | None = None,
) -> str:
    """Record the attempt's outcome; the row's new status (sent, pending for a retry, dead)."""
    now = now or utcnow()
    t = queue.table
    attempts = row.attempts + 1
    values: dict[str, Any] = {"claim_token": None, "claimed_at": None, "last_error": error}
    if error is None:
        status = queue.sent_status
        values[queue.sent_at] = now
    elif permanent or attempts >= policy.max_attempts:
        status = "dead"
        if not permanent:
            values["last_error"] = f"gave up after {attempts} attempts: {error}"
    else:
        status = "pending"
        values["next_attempt_at"] = now + policy.delay(attempts)
    with store.begin() as conn:
        conn.execute(t.update().where(t.c.id == row.id).values(status=status, **values))
        conn.execute(
            attempts_t.update()
            .where(attempts_t.c.id == attempt_id)
            .values(outcome="sent" if error is None else "failed", finished_at=now, error=error)
        )
    return status


def release(store: RecordStore, queue: Queue, token: str) -> int:
    """Give back the rows this drain claimed but did not start (it stops early)."""
    t = queue.table
    with store.begin() as conn:
        return conn.execute(
            t.update()
            .where(t.c.claim_token == token, t.c.status == "claimed")
            .values(status="pending", claim_token=None, claimed_at=None)
        ).rowcount


def requeue(store: RecordStore, queue: Queue, ids: list[uuid.UUID]) -> int:
    """An operator's decision: send these dead or unconfirmed rows again, from attempt zero."""
    t = queue.table
    with store.begin() as conn:
        return conn.execute(
            t.update()
            .where(t.c.id.in_(ids), t.c.status.in_(["dead", "unconfirmed"]))
            .values(status="pending", attempts=0, next_attempt_at=None, claim_token=None, claimed_at=None)
        ).rowcount


def attempts_of(store: RecordStore, queue: Queue, id_: uuid.UUID) -> list[Mapping[str, Any]]:
    """Every attempt at one row, oldest first."""
    a = attempts_t
    with store.engine.connect() as conn:
        rows = conn.execute(
            sa.select(a).where(a.c.subject == queue.subject, a.c.subject_id == str(id_)).order_by(a.c.id)
        ).all()
    return [r._mapping for r in rows]


def listing(store: RecordStore, queue: Queue, *, statuses: list[str] | None = None, limit: int = 50) -> list[dict]:
    """Rows of the queue (of these statuses), newest first: id, status, attempts, last error, when."""
    t = queue.table
    cols = [t.c.id, t.c.status, t.c.attempts, t.c.last_error, t.c.next_attempt_at, t.c[queue.sent_at]]
    if queue.target_column:
        cols.insert(1, t.c[queue.target_column])
    q = sa.select(*cols)
    if queue.where is not None:
        q = q.where(queue.where)
    if statuses:
        q = q.where(t.c.status.in_(statuses))
    order = t.c.created_at if "created_at" in t.c else t.c.id
    with store.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(q.order_by(order.desc()).limit(limit))]
