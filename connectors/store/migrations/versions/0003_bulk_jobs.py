"""bulk jobs capability schema additions

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("bulk_jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("mode", sa.String(length=16), server_default="execute", nullable=False))
        batch_op.add_column(sa.Column("plan_id", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("planned_at", _TS, nullable=True))
        batch_op.add_column(sa.Column("confirmed_at", _TS, nullable=True))
        batch_op.add_column(sa.Column("cancel_requested_at", _TS, nullable=True))
        batch_op.add_column(sa.Column("started_at", _TS, nullable=True))
        batch_op.add_column(sa.Column("finished_at", _TS, nullable=True))
        batch_op.add_column(sa.Column("next_seq", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("skipped_count", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("summary", _JSON, server_default="{}", nullable=False))
        batch_op.add_column(sa.Column("rollback_of", sa.Uuid(), nullable=True))
        batch_op.create_check_constraint(
            batch_op.f("ck_bulk_jobs_mode_values"), "mode IN ('execute', 'preview', 'dry_run')"
        )
        batch_op.create_index(batch_op.f("ix_bulk_jobs_dagster_run_id"), ["dagster_run_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_bulk_jobs_rollback_of"), ["rollback_of"], unique=False)
    with op.batch_alter_table("bulk_job_items", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_bulk_job_items_bulk_job_id_entity_id"), ["bulk_job_id", "entity_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("bulk_job_items", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_bulk_job_items_bulk_job_id_entity_id"))
    with op.batch_alter_table("bulk_jobs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_bulk_jobs_rollback_of"))
        batch_op.drop_index(batch_op.f("ix_bulk_jobs_dagster_run_id"))
        batch_op.drop_constraint(batch_op.f("ck_bulk_jobs_mode_values"), type_="check")
        for column in (
            "rollback_of",
            "summary",
            "skipped_count",
            "next_seq",
            "finished_at",
            "started_at",
            "cancel_requested_at",
            "confirmed_at",
            "planned_at",
            "plan_id",
            "mode",
        ):
            batch_op.drop_column(column)
