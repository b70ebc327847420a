"""accounts gain `settings`: per-account configuration such as the allowed values of status and stage

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01

`settings` is a JSON object, `{}` by default. `value_sets` in it overrides the registry's
default value sets, keyed `<entity>.<field>`: `{"value_sets": {"applications.stage": [...]}}`.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("settings", _JSON, server_default="{}", nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.drop_column("settings")
