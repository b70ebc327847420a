"""Delivery of failed-run alerts to webhooks (httpx) and email (SMTP), at most once per receiver, retried with backoff."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from connectors import mail, webhooks
from connectors.store import RecordStore, alerts, deliveries, schema

if TYPE_CHECKING:
    import httpx

QUEUE = deliveries.ALERTS


@dataclass
class AlertResult:
    sent: int = 0
    retrying: int = 0
    dead: int = 0
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"sent": self.sent, "retrying": self.retrying, "dead": self.dead}


def payload(alert: sa.Row) -> dict[str, Any]:
    """What a webhook receives: the run, its link, its kind and its first error."""
    return {
        "event": "run_failed",
        "run_id": alert.run_id,
        "job": alert.job_name,
        "kind": alert.kind,
        "account": alert.account,
        "change_set_id": str(alert.change_set_id) if alert.change_set_id else None,
        "status": alert.run_status,
        "reason": alert.reason,
        "run_url": alert.run_url,
    }


def email_text(alert: sa.Row) -> tuple[str, str]:
    subject = f"[bulkops] {alert.kind or alert.job_name} run failed: {alert.job_name} {alert.run_id[:8]}"
    lines = [
        f"Run {alert.run_id} of {alert.job_name} ended {alert.run_status}.",
        f"Kind: {alert.kind or '-'}   Account: {alert.account or '-'}",
        f"First error: {alert.reason or '(none recorded)'}",
        f"Open the run: {alert.run_url}" if alert.run_url else "",
    ]
    return subject, "\n".join(line for line in lines if line)


def _webhook(client: httpx.Client, url: str, body: dict[str, Any]) -> tuple[str | None, bool]:
    # one try here: the queue's backoff spaces the retries over minutes, not seconds
    result = webhooks.deliver(url, body, max_attempts=1, client=client)
    if result.ok:
        return None, False
    permanent = result.status_code is not None and result.status_code not in webhooks.RETRY_STATUSES
    return result.error or "not delivered", permanent


def deliver(
    store: RecordStore,
    *,
    smtp: mail.SmtpSettings | None,
    run_id: str | None = None,
    limit: int = 50,
    policy: deliveries.Policy = deliveries.DEFAULT_POLICY,
    now: Callable[[], datetime] | None = None,
    budget_seconds: float = 30.0,
    timeout: float = 10.0,
) -> AlertResult:
    """Send the due notifications (of RUN_ID only, when given); each receiver gets an alert at most once."""
    clock = now or deliveries.utcnow
    queue = QUEUE if run_id is None else replace(QUEUE, where=schema.alert_deliveries.c.run_id == run_id)
    result = AlertResult()
    started = time.monotonic()
    token, rows = deliveries.claim(store, queue, limit=limit, now=clock(), policy=policy)
    import httpx  # here, not at the top: the sensors that call this load with every run worker

    try:
        with httpx.Client(timeout=timeout) as client, _mailer(smtp) as mailer:
            for row in rows:
                if time.monotonic() - started > budget_seconds:
                    break
                attempt = deliveries.start(store, queue, row, token, target=row.target, now=clock())
                if attempt is None:
                    continue
                with store.engine.connect() as conn:
                    alert = alerts.alert_of(conn, row.run_id)
                if row.channel == "webhook":
                    error, permanent = _webhook(client, row.target, payload(alert))
                elif mailer is None:
                    error, permanent = "no SMTP server: set BULKOPS_SMTP_HOST", False
                else:
                    subject, body = email_text(alert)
                    try:
                        mailer.send(row.target, subject, body, message_id=f"alert-{row.id}")
                        error, permanent = None, False
                    except mail.SendFailed as exc:
                        error, permanent = str(exc), exc.permanent
                status = deliveries.finish(
                    store, queue, row, attempt, error=error, permanent=permanent, policy=policy, now=clock()
                )
                if status == queue.sent_status:
                    result.sent += 1
                else:
                    result.dead += status == "dead"
                    result.retrying += status == "pending"
                    result.errors.append(f"{row.target}: {error}")
    finally:
        deliveries.release(store, queue, token)
    return result


class _NoMailer:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _mailer(smtp: mail.SmtpSettings | None) -> mail.Mailer | _NoMailer:
    return mail.Mailer(smtp) if smtp is not None else _NoMailer()
