"""documents: stored originals with versions and a task status; skills found with their evidence

- `documents` is rebuilt: linked to its applicant (`candidate_id`) or job (`job_id`) with a
  version number, where the file is stored, pages (and how many were read by OCR), the status of
  its skills-extraction task and why it failed, its Dagster partition, and the document import
  that stored it (`import_id`, provenance for the rollback).
- `candidate_skills` and `job_skills` are rebuilt: one row per skill found in one document, with
  the evidence (page, character span, the text as written, how often), provenance `import_id`.

Nothing wrote these three tables before this revision, so they are dropped and created again;
the downgrade does the same back to the previous shapes.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
NOW = sa.text("(CURRENT_TIMESTAMP)")


def _skill_links(name: str, owner: str, owner_table: str) -> None:
    op.create_table(
        name,
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column(owner, sa.Uuid(), nullable=False),
        sa.Column("skill_id", sa.Uuid(), nullable=False),
        sa.Column("document_id", sa.Uuid(), nullable=False),
        sa.Column("page", sa.Integer(), nullable=False),
        sa.Column("span_start", sa.Integer(), nullable=False),
        sa.Column("span_end", sa.Integer(), nullable=False),
        sa.Column("evidence", sa.String(length=500), nullable=False),
        sa.Column("mentions", sa.Integer(), server_default="1", nullable=False),
        sa.Column("import_id", sa.Uuid(), nullable=True),
        sa.Column("created_at", TS, server_default=NOW, nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], name=op.f(f"fk_{name}_account_id_accounts")),
        sa.ForeignKeyConstraint([owner], [f"{owner_table}.id"], name=op.f(f"fk_{name}_{owner}_{owner_table}")),
        sa.ForeignKeyConstraint(["document_id"], ["documents.id"], name=op.f(f"fk_{name}_document_id_documents")),
        sa.ForeignKeyConstraint(["skill_id"], ["skills.id"], name=op.f(f"fk_{name}_skill_id_skills")),
        sa.PrimaryKeyConstraint("id", name=op.f(f"pk_{name}")),
        sa.UniqueConstraint("document_id", "skill_id", name=op.f(f"uq_{name}_document_id_skill_id")),
    )
    op.create_index(op.f(f"ix_{name}_{owner}"), name, [owner], unique=False)


def upgrade() -> None:
    op.drop_table("job_skills")
    op.drop_table("candidate_skills")
    op.drop_table("documents")
    op.create_table(
        "documents",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("content_sha256", sa.String(length=64), nullable=False),
        sa.Column("filename", sa.String(length=500), nullable=True),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("media_type", sa.String(length=100), nullable=True),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("candidate_id", sa.Uuid(), nullable=True),
        sa.Column("job_id", sa.Uuid(), nullable=True),
        sa.Column("version", sa.Integer(), server_default="1", nullable=False),
        sa.Column("source_url", sa.Text(), nullable=True),
        sa.Column("storage_path", sa.Text(), nullable=True),
        sa.Column("pages", sa.Integer(), nullable=True),
        sa.Column("ocr_pages", sa.Integer(), server_default="0", nullable=False),
        sa.Column("text", sa.Text(), nullable=True),
        sa.Column("status", sa.String(length=16), server_default="pending", nullable=False),
        sa.Column("error_kind", sa.String(length=32), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("partition_key", sa.String(length=500), nullable=True),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("import_id", sa.Uuid(), nullable=True),
        sa.Column("created_at", TS, server_default=NOW, nullable=False),
        sa.Column("updated_at", TS, server_default=NOW, nullable=False),
        sa.CheckConstraint("kind IN ('resume', 'job_description')", name=op.f("ck_documents_kind_values")),
        sa.CheckConstraint(
            "status IN ('pending', 'processing', 'completed', 'failed')", name=op.f("ck_documents_status_values")
        ),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], name=op.f("fk_documents_account_id_accounts")),
        sa.ForeignKeyConstraint(["candidate_id"], ["users.id"], name=op.f("fk_documents_candidate_id_users")),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], name=op.f("fk_documents_job_id_jobs")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_documents")),
        sa.UniqueConstraint(
            "account_id", "kind", "content_sha256", name=op.f("uq_documents_account_id_kind_content_sha256")
        ),
    )
    op.create_index(op.f("ix_documents_candidate_id"), "documents", ["candidate_id"], unique=False)
    op.create_index(op.f("ix_documents_job_id"), "documents", ["job_id"], unique=False)
    _skill_links("candidate_skills", "candidate_id", "users")
    _skill_links("job_skills", "job_id", "jobs")


def downgrade() -> None:
    op.drop_table("job_skills")
    op.drop_table("candidate_skills")
    op.drop_table("documents")
    op.create_table(
        "documents",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("content_sha256", sa.String(length=64), nullable=False),
        sa.Column("filename", sa.String(length=500), nullable=True),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("media_type", sa.String(length=100), nullable=True),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("entity_type", sa.String(length=32), nullable=True),
        sa.Column("entity_id", sa.Uuid(), nullable=True),
        sa.Column("source_url", sa.Text(), nullable=True),
        sa.Column("text", sa.Text(), nullable=True),
        sa.Column("created_at", TS, server_default=NOW, nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], name=op.f("fk_documents_account_id_accounts")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_documents")),
        sa.UniqueConstraint("account_id", "content_sha256", name=op.f("uq_documents_account_id_content_sha256")),
    )
    for name, owner, owner_table in (("candidate_skills", "candidate_id", "users"), ("job_skills", "job_id", "jobs")):
        op.create_table(
            name,
            sa.Column("account_id", sa.Uuid(), nullable=False),
            sa.Column(owner, sa.Uuid(), nullable=False),
            sa.Column("skill_id", sa.Uuid(), nullable=False),
            sa.Column("document_id", sa.Uuid(), nullable=True),
            sa.Column("confidence", sa.Float(), nullable=True),
            sa.Column("created_at", TS, server_default=NOW, nullable=False),
            sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], name=op.f(f"fk_{name}_account_id_accounts")),
            sa.ForeignKeyConstraint([owner], [f"{owner_table}.id"], name=op.f(f"fk_{name}_{owner}_{owner_table}")),
            sa.ForeignKeyConstraint(["document_id"], ["documents.id"], name=op.f(f"fk_{name}_document_id_documents")),
            sa.ForeignKeyConstraint(["skill_id"], ["skills.id"], name=op.f(f"fk_{name}_skill_id_skills")),
            sa.PrimaryKeyConstraint(owner, "skill_id", name=op.f(f"pk_{name}")),
        )
