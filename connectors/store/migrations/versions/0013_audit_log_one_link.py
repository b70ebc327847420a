"""audit_log: change_set_id is the one link; import_id, bulk_job_id and sync_run_id go

Since 0009 every audit row names the change set that wrote it (`change_set_id`, backfilled), and
every writer and reader is on it (docs/change-sets.md). The three columns that also named an
import, a bulk job or a sync run are dropped, with the partial indexes on `import_id` and
`bulk_job_id`. `change_set_id` stays nullable: a row from before change sets that named nothing
has none.

SQLite drops each column in place (3.35+), as 0009's downgrade does: a batch rebuild would drop the
append-only triggers with the old table.

The downgrade adds the columns back and fills them from `change_sets`, as the audit writer did
before this revision: `import_id` for the rows of an import and of an import's rollback,
`bulk_job_id` for a bulk job's (a bulk job's rollback is a bulk job) and of a rollback of one,
`sync_run_id` for a sync run's and of a rollback of one. The append-only triggers are set aside
for that fill only.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

# change set kind -> the audit_log column that named it before this revision
LINKS = (("import", "import_id"), ("bulk_job", "bulk_job_id"), ("sync", "sync_run_id"))
INDEXED = ("bulk_job_id", "import_id")
_SQLITE_APPEND_ONLY = [
    "CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log "
    "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only (UPDATE refused)'); END",
    "CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log "
    "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only (DELETE refused)'); END",
]


def _pg() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def _append_only(on: bool) -> None:
    if _pg():
        op.execute(f"ALTER TABLE audit_log {'ENABLE' if on else 'DISABLE'} TRIGGER audit_log_append_only")
        return
    op.execute("DROP TRIGGER IF EXISTS audit_log_no_update")
    op.execute("DROP TRIGGER IF EXISTS audit_log_no_delete")
    if on:
        for statement in _SQLITE_APPEND_ONLY:
            op.execute(statement)


def upgrade() -> None:
    for column in INDEXED:
        op.drop_index(f"ix_audit_log_{column}", table_name="audit_log")
    for _, column in LINKS:
        if _pg():
            op.drop_column("audit_log", column)
        else:
            op.execute(f"ALTER TABLE audit_log DROP COLUMN {column}")


def downgrade() -> None:
    for _, column in LINKS:
        op.add_column("audit_log", sa.Column(column, sa.Uuid(), nullable=True))
    _append_only(False)
    # one pass per column: the rows of a change set of the column's kind, and of a rollback of one
    for kind, column in LINKS:
        op.execute(
            f"UPDATE audit_log SET {column} = CASE WHEN cs.kind = '{kind}' THEN cs.id ELSE cs.rollback_of END "
            f"FROM change_sets cs LEFT JOIN change_sets t ON t.id = cs.rollback_of "
            f"WHERE cs.id = audit_log.change_set_id "
            f"AND (cs.kind = '{kind}' OR (cs.kind = 'rollback' AND t.kind = '{kind}'))"
        )
    _append_only(True)
    for column in INDEXED:
        where = sa.text(f"{column} IS NOT NULL")
        op.create_index(
            f"ix_audit_log_{column}", "audit_log", [column], unique=False, postgresql_where=where, sqlite_where=where
        )
