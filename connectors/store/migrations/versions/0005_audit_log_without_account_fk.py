"""audit_log: no foreign key to accounts, partial indexes on bulk_job_id and import_id

Every created or updated record writes an audit row, so an import of a million applications
writes three million of them; the foreign key to `accounts` cost a row-level integrity check on
each (about a quarter of the audit insert, measured in docs/imports.md). The log is append-only
history: it never references anything that can go away (accounts are never deleted) and must
outlive whatever it describes, so it keeps `account_id` as a plain indexed column.

An audit row comes from a bulk job or from an import: the indexes on `bulk_job_id` and
`import_id` become partial (`IS NOT NULL`), so an import's rows no longer pay an entry in the bulk
job index and the other way round (300k audit inserts: 4.4-5.2 s -> 3.4-4.7 s). Lookups by
equality still use them.

On SQLite the table is rebuilt (batch mode), which drops its append-only triggers: they are
created again.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_FK = "fk_audit_log_account_id_accounts"
_SQLITE_APPEND_ONLY = [
    "CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log "
    "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only (UPDATE refused)'); END",
    "CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log "
    "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only (DELETE refused)'); END",
]


def _sqlite() -> bool:
    return op.get_bind().dialect.name == "sqlite"


def _restore_sqlite_triggers() -> None:
    op.execute("DROP TRIGGER IF EXISTS audit_log_no_update")
    op.execute("DROP TRIGGER IF EXISTS audit_log_no_delete")
    for statement in _SQLITE_APPEND_ONLY:
        op.execute(statement)


def _reindex(partial: bool) -> None:
    for column in ("bulk_job_id", "import_id"):
        name = f"ix_audit_log_{column}"
        op.drop_index(name, table_name="audit_log")
        where = sa.text(f"{column} IS NOT NULL") if partial else None
        op.create_index(name, "audit_log", [column], unique=False, postgresql_where=where, sqlite_where=where)


def upgrade() -> None:
    _reindex(partial=True)
    if not _sqlite():
        op.drop_constraint(_FK, "audit_log", type_="foreignkey")
        return
    with op.batch_alter_table("audit_log", recreate="always") as batch_op:
        batch_op.drop_constraint(_FK, type_="foreignkey")
    _restore_sqlite_triggers()


def downgrade() -> None:
    _reindex(partial=False)
    if not _sqlite():
        op.create_foreign_key(_FK, "audit_log", "accounts", ["account_id"], ["id"])
        return
    with op.batch_alter_table("audit_log", recreate="always") as batch_op:
        batch_op.create_foreign_key(_FK, "accounts", ["account_id"], ["id"])
    _restore_sqlite_triggers()
