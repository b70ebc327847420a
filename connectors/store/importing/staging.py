"""The staging table of an import, and the parameters every statement of a batch binds.

One temporary table per import on the import's connection: each batch's rows are loaded into
it (row_no, rnd, the mapped columns), and the statements fill in its state columns (the ids
found, the outcome, the error) before they write the records.
"""

from __future__ import annotations

import sqlalchemy as sa

from connectors.store.dialect import StoreDialect
from connectors.store.schema import TS

# staged columns that joins and filters use
STAGE_KEYS = ("email_norm", "external_id", "job_code", "code", "application_external_id")
# staged columns the statements fill in (all NULL when a batch is loaded)
STATE_COLUMNS = ("job_id", "candidate_id", "match_id", "ref_id", "outcome", "err", "err_col")
TIMESTAMP_COLUMNS = ("applied_at",)

# what every statement of an import binds (the writer's `params`), and the batch's round
ACCT = sa.bindparam("acct", type_=sa.Uuid())
IMP = sa.bindparam("imp", type_=sa.Uuid())
ACTOR = sa.bindparam("actor", type_=sa.String())
NOW = sa.bindparam("now", type_=TS)
FORM = sa.bindparam("form", type_=sa.String())
DEFAULT_STAGE = sa.bindparam("default_stage", type_=sa.String())
ROUND = sa.bindparam("r", type_=sa.Integer())


def staging_table(name: str, columns: list[str], dialect: StoreDialect, id_prefix: str) -> sa.Table:
    """The staging table NAME for the mapped COLUMNS (text; timestamps typed).

    `new_id`, the id a created record gets, derives from ID_PREFIX and the row number: one
    import's ids ascend in file order, so index inserts append instead of landing on random pages.
    """
    typed = dialect.staging_type
    row_no = sa.Column("row_no", sa.BigInteger())
    table = sa.Table(
        name,
        sa.MetaData(),
        row_no,
        sa.Column("rnd", sa.Integer()),
        *(sa.Column(c, typed(TS if c in TIMESTAMP_COLUMNS else sa.Text())) for c in columns),
        sa.Column("new_id", typed(sa.Uuid()), sa.Computed(dialect.uuid_from(id_prefix, row_no), persisted=True)),
        *(sa.Column(c, typed(sa.Text() if c in ("outcome", "err", "err_col") else sa.Uuid())) for c in STATE_COLUMNS),
        sa.Index(f"{name}_rnd", "rnd"),
        sa.Index(f"{name}_row", "row_no"),
        prefixes=["TEMPORARY"],
        # the statements update each row a few times: free room on its page takes the new versions
        postgresql_with={"fillfactor": 20},
    )
    return table


def probe(stage: sa.Table, column: str, record: sa.Select, where: sa.ColumnElement) -> sa.Update:
    """Set COLUMN of the staged rows matching WHERE to the id RECORD finds, where it finds one.

    RECORD selects one id from the record tables and refers to the staged row's columns (one
    index probe per staged row); WHERE must include `column IS NULL`, so rows without a match
    keep NULL. A subquery, not a join, on purpose: the planner cannot turn it around. As a join
    it hashed the account's whole table every batch, or, when the statistics missed the
    account's rows, drove from the record table and scanned the staging table once per record.
    """
    return stage.update().values({column: record.scalar_subquery()}).where(where)
