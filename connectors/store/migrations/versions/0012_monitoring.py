"""monitoring: failed runs and their notifications, and the outbox drain's claims and attempts

- `run_alerts`: one row per failed or crashed Dagster run (the run-failure sensor), with its reason.
- `alert_deliveries`: one row per alert and receiver (webhook URL or email address), so an alert is
  sent at most once per receiver and retried with backoff while the receiver is down.
- `delivery_attempts`: every attempt to send an outbox email or an alert, written before the send.
- `automation_events` gains `next_attempt_at`, `claimed_at` and `claim_token`: the drain claims rows
  in a transaction before it sends them, so two drains, or a drain killed mid-batch, never send an
  event twice.

Revision ID: 0012
Revises: 0009
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0009"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
STATUSES = "'pending', 'claimed', 'sending', 'sent', 'dead', 'unconfirmed'"


def upgrade() -> None:
    op.create_table(
        "run_alerts",
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("job_name", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(32), nullable=True),
        sa.Column("account", sa.String(64), nullable=True),
        sa.Column("change_set_id", sa.Uuid(), nullable=True),
        sa.Column("run_status", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("run_url", sa.Text(), nullable=True),
        sa.Column("recorded_at", TS, server_default=sa.func.current_timestamp(), nullable=False),
        sa.PrimaryKeyConstraint("run_id", name=op.f("pk_run_alerts")),
    )
    op.create_index(op.f("ix_run_alerts_recorded_at"), "run_alerts", ["recorded_at"])
    op.create_table(
        "alert_deliveries",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("target", sa.String(500), nullable=False),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), server_default="pending", nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("next_attempt_at", TS, nullable=True),
        sa.Column("claimed_at", TS, nullable=True),
        sa.Column("claim_token", sa.String(32), nullable=True),
        sa.Column("sent_at", TS, nullable=True),
        sa.CheckConstraint(f"status IN ({STATUSES})", name=op.f("ck_alert_deliveries_status_values")),
        sa.ForeignKeyConstraint(["run_id"], ["run_alerts.run_id"], name=op.f("fk_alert_deliveries_run_id_run_alerts")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_deliveries")),
        sa.UniqueConstraint("run_id", "target", name=op.f("uq_alert_deliveries_run_id_target")),
    )
    op.create_index(
        op.f("ix_alert_deliveries_status_next_attempt_at"), "alert_deliveries", ["status", "next_attempt_at"]
    )
    op.create_table(
        "delivery_attempts",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("subject", sa.String(32), nullable=False),
        sa.Column("subject_id", sa.String(64), nullable=False),
        sa.Column("target", sa.String(500), nullable=True),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("finished_at", TS, nullable=True),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_delivery_attempts")),
    )
    op.create_index(op.f("ix_delivery_attempts_subject_subject_id"), "delivery_attempts", ["subject", "subject_id"])
    with op.batch_alter_table("automation_events") as batch_op:
        batch_op.add_column(sa.Column("next_attempt_at", TS, nullable=True))
        batch_op.add_column(sa.Column("claimed_at", TS, nullable=True))
        batch_op.add_column(sa.Column("claim_token", sa.String(32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("automation_events") as batch_op:
        batch_op.drop_column("claim_token")
        batch_op.drop_column("claimed_at")
        batch_op.drop_column("next_attempt_at")
    op.drop_index(op.f("ix_delivery_attempts_subject_subject_id"), table_name="delivery_attempts")
    op.drop_table("delivery_attempts")
    op.drop_index(op.f("ix_alert_deliveries_status_next_attempt_at"), table_name="alert_deliveries")
    op.drop_table("alert_deliveries")
    op.drop_index(op.f("ix_run_alerts_recorded_at"), table_name="run_alerts")
    op.drop_table("run_alerts")
