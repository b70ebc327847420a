"""match keys ignore case: (account_id, lower(key)) indexes for job codes and external ids

Imports match job codes, external ids and the application external ids of contracts without
case (and without surrounding whitespace, which the import strips). Each lookup compares
lower(stored) with lower(staged), so the indexes that serve them hold lower(key): the external
id indexes of users, jobs, applications and contracts are rebuilt on lower(external_id) (no
lookup compares external ids with their case any more: a case-sensitive import narrows the
folded probe with an exact comparison), and jobs gain one on lower(code).

The unique constraint on (account_id, code) stays as it is: an account that already holds codes
differing only in case (`ENG-1` and `eng-1`) keeps both jobs, and imports match the older one.
Expression indexes rather than normalised key columns: every writer of these columns (imports,
bulk field updates, the API, syncs to come) keeps them right without knowing of them, and no
column is added to four tables. Measured on PostgreSQL 15 with 1.2M rows of one account (machine
loaded): 20,000 probes 2.26 s (expression) vs 2.25 s (key column), 200,000 inserts 18.0 s vs
19.7 s, index 147 MB vs 146 MB, and the key column adds 10 MB to the table.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

# (table, key column): the index on (account_id, key) it had before, if any
FOLDED = (
    ("users", "external_id", True),
    ("jobs", "external_id", True),
    ("applications", "external_id", True),
    ("contracts", "external_id", True),
    ("jobs", "code", False),
)


def upgrade() -> None:
    for table, column, had_exact in FOLDED:
        if had_exact:
            op.drop_index(f"ix_{table}_account_id_{column}", table_name=table)
        op.create_index(f"ix_{table}_account_id_lower_{column}", table, ["account_id", sa.text(f"lower({column})")])


def downgrade() -> None:
    for table, column, had_exact in FOLDED:
        op.drop_index(f"ix_{table}_account_id_lower_{column}", table_name=table)
        if had_exact:
            op.create_index(f"ix_{table}_account_id_{column}", table, ["account_id", column])
