"""Failed runs and the notifications about them: `run_alerts` (one row per run) and `alert_deliveries`."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from connectors.store import RecordStore, schema

alerts_t = schema.run_alerts
deliveries_t = schema.alert_deliveries


def record(
    store: RecordStore,
    *,
    run_id: str,
    job_name: str,
    run_status: str,
    reason: str | None,
    run_url: str | None,
    targets: Sequence[tuple[str, str]],
    kind: str | None = None,
    account: str | None = None,
    change_set_id: uuid.UUID | None = None,
    now: datetime | None = None,
) -> bool:
    """Record the failed run and a pending notification per (channel, target); False when it was recorded already."""
    now = now or datetime.now(UTC)
    rows, seen = [], set()
    for channel, target in targets:
        if target not in seen:
            seen.add(target)
            rows.append({"id": uuid.uuid4(), "run_id": run_id, "channel": channel, "target": target[:500]})
    try:
        with store.begin() as conn:
            if conn.scalar(sa.select(sa.literal(1)).where(alerts_t.c.run_id == run_id)) is not None:
                return False
            conn.execute(
                alerts_t.insert().values(
                    run_id=run_id,
                    job_name=job_name,
                    kind=kind,
                    account=account,
                    change_set_id=change_set_id,
                    run_status=run_status,
                    reason=reason,
                    run_url=run_url,
                    recorded_at=now,
                )
            )
            if rows:
                conn.execute(deliveries_t.insert(), rows)
    except sa.exc.IntegrityError:
        # another evaluation recorded this run a moment ago
        return False
    return True


def get(store: RecordStore, run_id: str) -> dict[str, Any] | None:
    """The alert of RUN_ID with its deliveries, or None."""
    with store.engine.connect() as conn:
        alert = conn.execute(sa.select(alerts_t).where(alerts_t.c.run_id == run_id)).first()
        if alert is None:
            return None
        sent = conn.execute(
            sa.select(deliveries_t).where(deliveries_t.c.run_id == run_id).order_by(deliveries_t.c.target)
        ).all()
    return {**alert._mapping, "deliveries": [dict(d._mapping) for d in sent]}


def alert_of(conn: sa.Connection, run_id: str) -> sa.Row:
    return conn.execute(sa.select(alerts_t).where(alerts_t.c.run_id == run_id)).one()


def recent(store: RecordStore, *, limit: int = 50) -> list[dict[str, Any]]:
    """The newest alerts, newest first."""
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(alerts_t).order_by(alerts_t.c.recorded_at.desc()).limit(limit)).all()
    return [dict(r._mapping) for r in rows]
