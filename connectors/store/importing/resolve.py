"""References of staged rows: the jobs of applications (created when missing), the candidates
of applications (created when missing), the applications of contracts."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa

from connectors.store.dialect import JOB_CODES, inline
from connectors.store.importing.audit import audit_rows
from connectors.store.importing.staging import ACCT, IMP, NOW, ROUND, probe
from connectors.store.schema import applications, jobs, users

if TYPE_CHECKING:
    from connectors.store.importing.writer import ImportWriter

# the created or updated rows of a round: the ones that need their candidate
ROUND_WRITES = ("created", "updated")
# job codes bound into one lookup
CODES_PER_QUERY = 1000


def job_ids(w: ImportWriter, codes: list[str]) -> dict[str, str | None]:
    """The oldest job with each of CODES (as staged), as the text the database holds its id in; None where none has it.

    Matched as the staging table's lookup matches them (`Keys.equal`: one probe of the folded
    code index per code), so a code gets the same job either way.
    """
    found: dict[str, str | None] = {}
    c = w.dialect.texts(sa.bindparam("job_codes", type_=sa.Text()), "job_codes")
    code = sa.type_coerce(c.c.value, sa.Text())
    lookup = sa.select(code, sa.cast(_oldest_job(w, code), sa.Text()))
    for i in range(0, len(codes), CODES_PER_QUERY):
        chunk = json.dumps(codes[i : i + CODES_PER_QUERY])
        found.update((code, id_) for code, id_ in w.run(lookup, job_codes=chunk))
    return found


def _oldest_job(w: ImportWriter, code: sa.ColumnElement) -> sa.ScalarSelect:
    """SQL: the id of the account's oldest job whose code equals CODE (`Keys.equal`: one probe of the folded code index)."""
    j = jobs.alias("j")
    return (
        sa.select(j.c.id)
        .where(j.c.account_id == ACCT, w.keys.equal(j.c.code, code))
        .order_by(j.c.created_at, j.c.id)
        .limit(inline(1))
        .scalar_subquery()
    )


def with_job_ids(w: ImportWriter, batch: pa.Table) -> pa.Table:
    """BATCH with `job_id`: each row's job by code, where one has it, looked up before the rows are staged.

    The batch's distinct codes in one query instead of a pass over the staging table, which
    rewrites every staged row; `resolve_jobs` checks them again under the account's lock.
    """
    codes = batch.column("job_code")
    w.staged_jobs = job_ids(w, pc.unique(codes).drop_null().to_pylist())
    found = {c: i for c, i in w.staged_jobs.items() if i is not None}
    if not found:
        return batch.append_column("job_id", pa.nulls(batch.num_rows, pa.string()))
    at = pc.index_in(codes, value_set=pa.array(list(found), codes.type))
    return batch.append_column("job_id", pc.take(pa.array(list(found.values()), pa.string()), at))


def resolve_jobs(w: ImportWriter) -> int:
    """Give each staged application its job by code, creating the missing jobs; how many were created."""
    s, d = w.stage.c, w.dialect
    need = sa.and_(s.job_id.is_(None), s.job_code.is_not(None), s.err.is_(None))
    k = w.keys.of(s.job_code)

    def lookup() -> None:
        # one index probe per distinct code of the batch (the oldest job with it), hashed back
        # onto the rows (a nested loop, which the planner takes when its statistics see few
        # codes, scans the batch once per code); materialized: inlined, the probe ran once per
        # row instead of once per code
        codes = sa.select(k.label("k"), sa.func.min(s.job_code).label("code")).where(need).group_by(k).subquery("d")
        found = (
            sa.select(codes.c.k, _oldest_job(w, codes.c.code).label("id")).cte("found_jobs").prefix_with("MATERIALIZED")
        )
        with d.setting(w.conn, "enable_nestloop", "off"):
            w.run(w.stage.update().values(job_id=found.c.id).where(need, found.c.id.is_not(None), found.c.k == k))

    # the jobs found before the rows were staged, now the lock is held: another writer may have
    # created, recoded or deleted one meanwhile. A row whose job changed is looked up again.
    staged = w.staged_jobs
    now = job_ids(w, list(staged))
    changed = [c for c, i in staged.items() if i is not None and now[c] != i]
    for i in range(0, len(changed), CODES_PER_QUERY):
        w.run(w.stage.update().values(job_id=None).where(s.job_code.in_(changed[i : i + CODES_PER_QUERY])))
    if not changed and all(i is not None for i in staged.values()):
        # every code has its job: no pass over the staging table
        return 0
    lookup()
    if w.shard and w.create_missing_jobs and w.run(sa.select(sa.func.count()).where(need)).scalar():
        # shards take turns creating jobs: after the turn, the jobs another shard created are found
        d.lock(w.conn, JOB_CODES, str(w.account_id))
        lookup()
    if not w.create_missing_jobs:
        message = inline("unknown job code ") + s.job_code + inline(" (create_missing_jobs is off)")
        w.run(w.stage.update().values(err=message, err_col=inline("job_code")).where(need))
        return 0
    # one job per code, spelled as its first row spells it
    first = sa.select(
        s.job_code,
        sa.func.max(s.job_title).over(partition_by=k).label("title"),
        sa.func.row_number().over(partition_by=k, order_by=s.row_no).label("n"),
    )
    f = first.where(need).subquery("f")
    insert = jobs.insert().from_select(
        ["id", "account_id", "code", "title", "status", "origin", "data", "import_id", "created_at", "updated_at"],
        sa.select(
            d.new_uuid(),
            ACCT,
            f.c.job_code,
            sa.func.coalesce(f.c.title, f.c.job_code),
            inline("open"),
            inline("uploaded"),
            d.empty_json(),
            IMP,
            NOW,
            NOW,
        ).where(f.c.n == 1),
    )

    def audited(rows: sa.FromClause) -> sa.Insert:
        after = d.json_object([("code", rows.c.code), ("title", rows.c.title)])
        return audit_rows(f"{w.kind}.create", "jobs", sa.select(rows.c.id, sa.null(), after), w.stamp)

    def inserted() -> sa.Select:
        return sa.select(jobs.c.id, jobs.c.code, jobs.c.title).where(
            jobs.c.account_id == ACCT,
            jobs.c.import_id == IMP,
            jobs.c.created_at == NOW,
            jobs.c.code.in_(sa.select(s.job_code).where(need)),
        )

    created = d.insert_then(w.conn, insert, (jobs.c.id, jobs.c.code, jobs.c.title), audited, inserted, w.params)
    if created:
        lookup()
    return created


def resolve_applications(w: ImportWriter) -> None:
    """Give each staged contract its application by external id; a row whose application is missing is an error."""
    s, a = w.stage.c, applications.alias("a")
    oldest = (
        sa.select(a.c.id)
        .where(
            a.c.account_id == ACCT, w.keys.equal(a.c.external_id, s.application_external_id), a.c.deleted_at.is_(None)
        )
        .order_by(a.c.created_at, a.c.id)
        .limit(inline(1))
    )
    w.run(probe(w.stage, "ref_id", oldest, sa.and_(s.ref_id.is_(None), s.application_external_id.is_not(None))))
    missing = sa.and_(s.ref_id.is_(None), s.application_external_id.is_not(None), s.err.is_(None))
    message = inline("no application with external id ") + s.application_external_id
    w.run(w.stage.update().values(err=message, err_col=inline("application_external_id")).where(missing))


def resolve_candidates(w: ImportWriter, r: int) -> int:
    """Give round R's written applications their candidate by email, creating the missing ones; how many were."""
    s, d = w.stage.c, w.dialect
    # the round's matching (match_duplicates) found the existing candidates in its pass
    need = sa.and_(s.rnd == ROUND, s.candidate_id.is_(None), s.outcome.in_([inline(o) for o in ROUND_WRITES]))
    # the first row per new email creates the user; its id derives from that row's number, so
    # the round's rows get it without a join with the inserted rows
    prefix = w.prefix["user"]
    rows = sa.select(
        d.uuid_from(prefix, s.row_no),
        ACCT,
        inline("candidate"),
        s.email,
        s.email_norm,
        s.first_name,
        s.last_name,
        s.phone,
        s.candidate_external_id,
        d.empty_json(),
        IMP,
        NOW,
        NOW,
    ).where(need)
    columns = ["id", "account_id", "role", "email", "email_normalized", "first_name", "last_name", "phone"]
    columns += ["external_id", "data", "import_id", "created_at", "updated_at"]
    insert = users.insert().from_select(columns, d.first_per(rows, s.email_norm, s.row_no))
    returning = (users.c.id, users.c.email, users.c.first_name, users.c.last_name, users.c.phone)
    firsts = sa.select(s.row_no, sa.func.min(s.row_no).over(partition_by=s.email_norm).label("first_row"))
    f = firsts.where(need).subquery("f")
    linked = w.stage.update().values(candidate_id=d.uuid_from(prefix, f.c.first_row)).where(s.row_no == f.c.row_no)

    def audited(rows: sa.FromClause) -> sa.Insert:
        after = d.json_object([(c, rows.c[c]) for c in ("email", "first_name", "last_name", "phone")])
        return audit_rows(f"{w.kind}.create", "candidates", sa.select(rows.c.id, sa.null(), after), w.stamp)

    def inserted() -> sa.Select:
        return sa.select(*returning).where(users.c.id.in_(sa.select(d.uuid_from(prefix, s.row_no)).where(need)))

    return d.insert_then(w.conn, insert, returning, audited, inserted, {**w.params, "r": r}, also=[linked])
