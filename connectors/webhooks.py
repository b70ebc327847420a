"""Webhook delivery for the automation outbox: httpx, retries with exponential backoff.

Transient failures (connection errors, timeouts, 429 and 5xx answers) are retried; other 4xx
answers fail at once. No Dagster here: the bulk job's delivery step calls `deliver_pending`.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from connectors.store import RecordStore, schema

if TYPE_CHECKING:
    import httpx

RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class Delivery:
    ok: bool
    attempts: int
    status_code: int | None = None
    error: str | None = None


def deliver(
    url: str,
    payload: Mapping[str, Any],
    *,
    max_attempts: int = 5,
    backoff_seconds: float = 0.5,
    max_backoff_seconds: float = 30.0,
    timeout: float = 10.0,
    client: httpx.Client | None = None,
    sleep: Callable[[float], None] = time.sleep,
    headers: Mapping[str, str] | None = None,
) -> Delivery:
    """POST `payload` as JSON to `url`, retrying transient failures with jittered exponential backoff."""
    import httpx

    own = client is None
    client = client or httpx.Client(timeout=timeout)
    error: str | None = None
    status: int | None = None
    try:
        for attempt in range(1, max_attempts + 1):
            try:
                response = client.post(url, json=payload, headers=dict(headers or {}))
                status = response.status_code
                if response.is_success:
                    return Delivery(True, attempt, status)
                error = f"HTTP {status}: {response.text[:200]}"
                if status not in RETRY_STATUSES:
                    return Delivery(False, attempt, status, error)
            except httpx.TransportError as exc:
                status, error = None, f"{type(exc).__name__}: {exc}"
            if attempt < max_attempts:
                delay = min(max_backoff_seconds, backoff_seconds * 2 ** (attempt - 1))
                sleep(delay * random.uniform(0.5, 1.5))
        return Delivery(False, max_attempts, status, error)
    finally:
        if own:
            client.close()


def deliver_pending(
    store: RecordStore,
    *,
    bulk_job_id: uuid.UUID | None = None,
    account_id: uuid.UUID | None = None,
    limit: int = 10_000,
    **deliver_options: Any,
) -> dict[str, int]:
    """Deliver pending webhook events of the outbox (optionally of one bulk job) and record each result."""
    ev = schema.automation_events
    stmt = (
        sa.select(ev).where(ev.c.status == "pending", ev.c.action == "webhook").order_by(ev.c.created_at).limit(limit)
    )
    if bulk_job_id is not None:
        stmt = stmt.where(ev.c.bulk_job_id == bulk_job_id)
    if account_id is not None:
        stmt = stmt.where(ev.c.account_id == account_id)
    with store.engine.connect() as conn:
        events = conn.execute(stmt).all()
    counts = {"delivered": 0, "failed": 0}
    if not events:
        return counts
    # httpx is imported when there is something to send: most bulk jobs have no webhook
    import httpx

    with httpx.Client(timeout=deliver_options.pop("timeout", 10.0)) as client:
        for event in events:
            url = (event.payload or {}).get("config", {}).get("url")
            body = {
                "event_id": str(event.id),
                "automation": event.automation,
                "entity_type": event.entity_type,
                "entity_id": str(event.entity_id),
                "bulk_job_id": str(event.bulk_job_id) if event.bulk_job_id else None,
            }
            result = deliver(url, body, client=client, **deliver_options) if url else Delivery(False, 0, None, "no url")
            now = datetime.now(UTC)
            with store.begin() as conn:
                conn.execute(
                    ev.update()
                    .where(ev.c.id == event.id)
                    .values(
                        status="delivered" if result.ok else "failed",
                        attempts=event.attempts + result.attempts,
                        last_error=result.error,
                        delivered_at=now if result.ok else None,
                    )
                )
            counts["delivered" if result.ok else "failed"] += 1
    return counts
