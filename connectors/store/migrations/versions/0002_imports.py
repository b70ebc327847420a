"""imports capability schema additions

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22

import_history gains `flagged` (rows flagged for review, a subset of `skipped`), `details`
(side counts: candidates and jobs created on the fly) and the status `skipped` (identical
content already imported). import_flags is the review queue of the "flag" duplicate strategy.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
_TS = sa.DateTime(timezone=True)
_OLD = ("pending", "processing", "completed", "failed", "cancelled", "rolled_back")
_NEW = (*_OLD, "skipped")


def _in(values: tuple[str, ...]) -> str:
    return "status IN (" + ", ".join(f"'{v}'" for v in values) + ")"


def upgrade() -> None:
    with op.batch_alter_table("import_history", schema=None) as batch_op:
        batch_op.add_column(sa.Column("flagged", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("details", _JSON, server_default="{}", nullable=False))
        batch_op.drop_constraint(batch_op.f("ck_import_history_status_values"), type_="check")
        batch_op.create_check_constraint(batch_op.f("ck_import_history_status_values"), _in(_NEW))
    op.create_table(
        "import_flags",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("import_id", sa.Uuid(), nullable=False),
        sa.Column("row_number", sa.Integer(), nullable=False),
        sa.Column("entity_type", sa.String(length=32), nullable=False),
        sa.Column("entity_id", sa.Uuid(), nullable=True),
        sa.Column("reason", sa.String(length=64), nullable=False),
        sa.Column("data", _JSON, server_default="{}", nullable=False),
        sa.Column("created_at", _TS, server_default=sa.text("(CURRENT_TIMESTAMP)"), nullable=False),
        sa.Column("resolved_at", _TS, nullable=True),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], name=op.f("fk_import_flags_account_id_accounts")),
        sa.ForeignKeyConstraint(
            ["import_id"], ["import_history.id"], name=op.f("fk_import_flags_import_id_import_history")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_import_flags")),
    )
    with op.batch_alter_table("import_flags", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_import_flags_import_id"), ["import_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_import_flags_account_id_entity_type_entity_id"),
            ["account_id", "entity_type", "entity_id"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("import_flags", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_import_flags_account_id_entity_type_entity_id"))
        batch_op.drop_index(batch_op.f("ix_import_flags_import_id"))
    op.drop_table("import_flags")
    with op.batch_alter_table("import_history", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("ck_import_history_status_values"), type_="check")
        batch_op.create_check_constraint(batch_op.f("ck_import_history_status_values"), _in(_OLD))
        batch_op.drop_column("details")
        batch_op.drop_column("flagged")
