"""Alerts on failed runs and the delivery sensors: failed-run notifications and the outbox's emails."""

from __future__ import annotations

import uuid

import dagster as dg

from connectors import mail, notify, outbox, settings
from connectors.store import alerts
from pipelines.monitoring.assets import GROUP_TAGS
from resources import RecordStoreResource

FAILURE_REASON_TAG = "dagster/failure_reason"
# the run worker died or never started, as opposed to a step that failed
CRASHES = frozenset({"UNEXPECTED_TERMINATION", "RUN_WORKER_RESTART", "START_TIMEOUT"})
MAX_REASON = 2000


def first_error(context: dg.RunFailureSensorContext) -> str:
    """The first step's error message, else the run's failure message."""
    for event in context.get_step_failure_events():
        data = event.step_failure_data
        if data is not None and data.error is not None:
            return f"{event.step_key}: {data.error.message.strip()}"[:MAX_REASON]
    return (context.failure_event.message or "run failed")[:MAX_REASON]


def _change_set(tags: dict[str, str]) -> uuid.UUID | None:
    for key in ("bulkops/change_set_id", "bulkops/bulk_job_id"):
        try:
            return uuid.UUID(tags[key])
        except (KeyError, ValueError):
            continue
    return None


def alert_targets() -> list[tuple[str, str]]:
    """(channel, target) of every configured receiver, read from the environment now."""
    targets = [("webhook", url) for url in settings.alert_webhook_urls()]
    return targets + [("email", address) for address in settings.alert_emails()]


@dg.run_failure_sensor(
    name="run_failure_alert_sensor",
    description=(
        "Records every failed or crashed run of this code location with its first error (table run_alerts) and "
        "notifies BULKOPS_ALERT_WEBHOOK_URLS and BULKOPS_ALERT_EMAILS with the run's link, kind and first error: once "
        "per run and receiver; alert_delivery_sensor retries a receiver that was down."
    ),
    default_status=dg.DefaultSensorStatus.RUNNING,
    tags=GROUP_TAGS,
)
def run_failure_alert_sensor(context: dg.RunFailureSensorContext, record_store: RecordStoreResource) -> None:
    run = context.dagster_run
    tags = dict(run.tags)
    store = record_store.store
    reason = first_error(context)
    recorded = alerts.record(
        store,
        run_id=run.run_id,
        job_name=run.job_name,
        run_status="CRASHED" if tags.get(FAILURE_REASON_TAG) in CRASHES else "FAILURE",
        reason=reason,
        run_url=f"{settings.dagster_ui_url()}/runs/{run.run_id}",
        targets=alert_targets(),
        kind=tags.get("bulkops/kind"),
        account=tags.get("bulkops/account"),
        change_set_id=_change_set(tags),
    )
    if not recorded:
        context.log.info(f"run {run.run_id}: alert recorded already")
        return
    sent = notify.deliver(store, smtp=mail.smtp_settings(), run_id=run.run_id, budget_seconds=20.0)
    context.log.info(f"run {run.run_id} failed ({reason[:200]}): alert recorded, notifications {sent.as_dict()}")


@dg.sensor(
    name="alert_delivery_sensor",
    minimum_interval_seconds=30,
    description=(
        "Retries failed-run notifications whose receiver was down, with exponential backoff; a notification that "
        "failed 5 times is dead (alert_deliveries.status)."
    ),
    default_status=dg.DefaultSensorStatus.RUNNING,
    tags=GROUP_TAGS,
)
def alert_delivery_sensor(context: dg.SensorEvaluationContext, record_store: RecordStoreResource) -> dg.SkipReason:
    result = notify.deliver(record_store.store, smtp=mail.smtp_settings())
    return dg.SkipReason(f"alert notifications: {result.as_dict()}" + "".join(f"; {e}" for e in result.errors[:5]))


@dg.sensor(
    name="outbox_email_sensor",
    minimum_interval_seconds=30,
    description=(
        "Sends the outbox's send_email automation events through the SMTP server of BULKOPS_SMTP_HOST, each at most "
        "once: claimed before sending, every attempt recorded (delivery_attempts), retried with backoff, dead after 5 "
        "attempts; an event whose send was interrupted is marked unconfirmed, not sent again."
    ),
    default_status=dg.DefaultSensorStatus.RUNNING,
    tags=GROUP_TAGS,
)
def outbox_email_sensor(context: dg.SensorEvaluationContext, record_store: RecordStoreResource) -> dg.SkipReason:
    smtp = mail.smtp_settings()
    if smtp is None:
        return dg.SkipReason("BULKOPS_SMTP_HOST is not set: send_email events wait in the outbox")
    result = outbox.drain(record_store.store, smtp)
    return dg.SkipReason(f"outbox emails: {result.as_dict()}" + "".join(f"; {e}" for e in result.errors[:5]))
