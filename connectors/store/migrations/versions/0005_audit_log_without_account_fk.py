"""audit_log without the foreign key to accounts

Every created or updated record writes an audit row, so an import of a million applications
writes three million of them; the foreign key to `accounts` cost a row-level integrity check on
each (about a quarter of the audit insert, measured in docs/imports.md). The log is append-only
history: it never references anything that can go away (accounts are never deleted) and must
outlive whatever it describes, so it keeps `account_id` as a plain indexed column.

On SQLite the table is rebuilt (batch mode), which drops its append-only triggers: they are
created again.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23
"""

from __future__ import annotations

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


def upgrade() -> None:
    if not _sqlite():
        op.drop_constraint(_FK, "audit_log", type_="foreignkey")
        return
    with op.batch_alter_table("audit_log", recreate="always") as batch_op:
        batch_op.drop_constraint(_FK, type_="foreignkey")
    _restore_sqlite_triggers()


def downgrade() -> None:
    if not _sqlite():
        op.create_foreign_key(_FK, "audit_log", "accounts", ["account_id"], ["id"])
        return
    with op.batch_alter_table("audit_log", recreate="always") as batch_op:
        batch_op.create_foreign_key(_FK, "accounts", ["account_id"], ["id"])
    _restore_sqlite_triggers()
