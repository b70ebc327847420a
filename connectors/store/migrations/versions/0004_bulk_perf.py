"""bulk job performance: lighter bulk_job_items

Items of a 1,000,000-id job are written in one COPY and then updated batch by batch; every index
and foreign key on them is paid a million times at each step.

- the foreign key to bulk_jobs goes: items are written only by `bulk.load_items`, in the same
  transaction that inserts their job, and jobs are never deleted (its per-row RI trigger was
  ~8 s of a 1M-id create);
- `(bulk_job_id, status)` goes: every status read is scoped to one job and walks its primary-key
  range; the index made each item update a non-HOT write into it;
- `(bulk_job_id, entity_id)` becomes partial on `status = 'succeeded'`: its only reader, a
  rollback, looks up succeeded items; pending items (all of them at create) are not indexed.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_SUCCEEDED = sa.text("status = 'succeeded'")


def upgrade() -> None:
    with op.batch_alter_table("bulk_job_items", schema=None) as batch_op:
        batch_op.drop_constraint("fk_bulk_job_items_bulk_job_id_bulk_jobs", type_="foreignkey")
        batch_op.drop_index("ix_bulk_job_items_bulk_job_id_status")
        batch_op.drop_index("ix_bulk_job_items_bulk_job_id_entity_id")
        batch_op.create_index(
            "ix_bulk_job_items_succeeded_entity_id",
            ["bulk_job_id", "entity_id"],
            unique=False,
            postgresql_where=_SUCCEEDED,
            sqlite_where=_SUCCEEDED,
        )


def downgrade() -> None:
    with op.batch_alter_table("bulk_job_items", schema=None) as batch_op:
        batch_op.drop_index("ix_bulk_job_items_succeeded_entity_id")
        batch_op.create_index("ix_bulk_job_items_bulk_job_id_entity_id", ["bulk_job_id", "entity_id"], unique=False)
        batch_op.create_index("ix_bulk_job_items_bulk_job_id_status", ["bulk_job_id", "status"], unique=False)
        batch_op.create_foreign_key("fk_bulk_job_items_bulk_job_id_bulk_jobs", "bulk_jobs", ["bulk_job_id"], ["id"])
