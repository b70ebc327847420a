"""syncs: what a sync run needs beyond its counts, and the manual-conflict queue

- `sync_runs` gains `unchanged` (rows equal to their record, a subset of `skipped`), `deleted`,
  `cursor_from` / `cursor` (the incremental position a run started from and the one its committed
  batches reached, `{"value": ..., "key": ...}`), `full_refresh` and `direction`.
- `sync_conflicts`: a record changed on both sides since the last successful sync of a connection
  whose strategy is `manual`, with both values; the record is left as it is until it is resolved.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("sync_runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("unchanged", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("deleted", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("cursor_from", _JSON, nullable=True))
        batch_op.add_column(sa.Column("cursor", _JSON, nullable=True))
        batch_op.add_column(sa.Column("full_refresh", sa.Boolean(), server_default=sa.false(), nullable=False))
        batch_op.add_column(sa.Column("direction", sa.String(16), server_default="in", nullable=False))
    op.create_table(
        "sync_conflicts",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("sync_run_id", sa.Uuid(), nullable=False),
        sa.Column("sync_name", sa.String(200), nullable=False),
        sa.Column("entity_type", sa.String(32), nullable=False),
        sa.Column("entity_id", sa.Uuid(), nullable=True),
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column("source_values", _JSON, nullable=False),
        sa.Column("target_values", _JSON, nullable=False),
        sa.Column("created_at", _TS, server_default=sa.text("(CURRENT_TIMESTAMP)"), nullable=False),
        sa.Column("resolved_at", _TS, nullable=True),
        sa.Column("resolution", sa.String(16), nullable=True),
        sa.Column("resolved_by", sa.String(200), nullable=True),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], name="fk_sync_conflicts_account_id_accounts"),
        sa.ForeignKeyConstraint(["sync_run_id"], ["sync_runs.id"], name="fk_sync_conflicts_sync_run_id_sync_runs"),
        sa.PrimaryKeyConstraint("id", name="pk_sync_conflicts"),
    )
    op.create_index("ix_sync_conflicts_account_id_sync_name", "sync_conflicts", ["account_id", "sync_name"])
    op.create_index("ix_sync_conflicts_sync_run_id", "sync_conflicts", ["sync_run_id"])


def downgrade() -> None:
    op.drop_table("sync_conflicts")
    with op.batch_alter_table("sync_runs", schema=None) as batch_op:
        for column in ("direction", "full_refresh", "cursor", "cursor_from", "deleted", "unchanged"):
            batch_op.drop_column(column)
