"""indexes that lead with the referencing column of foreign keys whose parents get deleted

Deleting a user or a job makes PostgreSQL (and SQLite, with foreign keys on) check every table
that references it, one query per deleted row. `applications.candidate_id` was indexed only after
`account_id` and `applications.job_id` not at all, so each check read the whole applications
table: rolling back an import of 50,000 applications took 37 s deleting its candidates, and grew
with the square of the size. The index on (account_id, candidate_id, job_id) becomes (candidate_id,
job_id), which serves the import's duplicate match by email the same way (a candidate id belongs
to one account); `applications.job_id` and `recollection_requests.candidate_id` get their own.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_applications_account_id_candidate_id_job_id", table_name="applications")
    op.create_index("ix_applications_candidate_id_job_id", "applications", ["candidate_id", "job_id"])
    op.create_index("ix_applications_job_id", "applications", ["job_id"])
    op.create_index("ix_recollection_requests_candidate_id", "recollection_requests", ["candidate_id"])


def downgrade() -> None:
    op.drop_index("ix_recollection_requests_candidate_id", table_name="recollection_requests")
    op.drop_index("ix_applications_job_id", table_name="applications")
    op.drop_index("ix_applications_candidate_id_job_id", table_name="applications")
    op.create_index(
        "ix_applications_account_id_candidate_id_job_id", "applications", ["account_id", "candidate_id", "job_id"]
    )
