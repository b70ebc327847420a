"""Import benchmark on PostgreSQL: raw COPY vs bulkops first import vs re-import.

    .venv/bin/python benchmarks/bench_import.py --rows 1000000 --rows-small 250000
    .venv/bin/python benchmarks/bench_import.py --rows 200000 --rows-small 0 --shards 1,2,1,2 --first-only

Generates an applications CSV (about 5% duplicate emails, messy values: upper case and padded
emails, mixed stages, a few bad dates and bad emails, quoted newlines), then on a throwaway
PostgreSQL database measures (a) COPY of the file into an all-text table (logged, the baseline
the targets are set against; an UNLOGGED one is printed beside it), (b) the first bulkops
import, (c) a re-import of the same file (`force=True` bypasses the identical-content skip;
rows equal to their records are unchanged and write nothing), (c') an import of the same rows
with every application's stage and data changed (all updates), then (d) the rollback of each,
newest first. Two reference points are printed with them: "COPY into a staging table, then
INSERT ... ON CONFLICT" into a single table, and the schema floors: the rows a first import writes (users, applications, form
submissions, an audit row each) and the rows a re-import writes (application updates with an
audit row holding before and after), written set-based with no logic at all, and the bare
floor: the first import's user, application and form-submission rows into copies of those tables
with primary keys only (no foreign keys, other indexes or audit rows), the bound for any design of
constraints, indexes and audit; and the bare re-import floor: COPY of the changed file into
staging, then one UPDATE of the applications by external id (no audit row), what the all-updates
import (c') is measured against (`update_vs_bare_re`). With `--shards` above 1, the schema
floor is also written by that many backends at once, each staging the file and writing its part
of the rows split by the email's hash as the shards are (`schema_floor_parallel`): the bound of a
sharded first import (`first_vs_parallel_floor`). The bare re-import floor runs
`--floor-runs` times (3) and its median is the one the ratio takes: one run moved by a quarter
between idle-machine runs. Every floor and every bulkops import starts after a CHECKPOINT, so
none pays for the dirty pages of the one before. Each bulkops import runs in a child process so
its peak RSS is its own. Prints figures; nothing is asserted.
"""

from __future__ import annotations

import argparse
import csv
import json
import multiprocessing as mp
import os
import random
import resource
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psycopg
import sqlalchemy as sa

ADMIN = os.environ.get("BULKOPS_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
HEADER = [
    "Application ID",
    "First Name",
    "Last Name",
    "Email",
    "Phone",
    "Job Code",
    "Job Title",
    "Stage",
    "Source",
    "Applied At",
    "Years Experience",
    "Cover Letter",
]
# the all-text table the file is COPYed into: one text column per header column
TEXT_COLUMNS = ", ".join(f"c{i} text" for i in range(len(HEADER)))
STAGES = ["Applied", "Phone Screen", "In Review", "Interview", "Offer", "  applied ", "IN REVIEW"]


def generate(path: Path, rows: int, seed: int = 7, *, changed: bool = False) -> None:
    """The applications file; `changed`: the same rows, each with another stage and experience."""
    rnd = random.Random(seed)
    jobs = [(f"JOB-{i:03d}", f"Job title {i}") for i in range(200)]
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(HEADER)
        for i in range(rows):
            # about 5% of rows reuse an earlier candidate's email (same job: a duplicate application)
            dup = i > 100 and rnd.random() < 0.05
            k = rnd.randrange(i) if dup else i
            job = jobs[k % len(jobs)]
            email = f"person{k}@example.com"
            if rnd.random() < 0.1:
                email = f"  {email.upper()} "
            applied = f"2026-{1 + k % 12:02d}-{1 + k % 28:02d} {k % 24:02d}:{k % 60:02d}"
            if rnd.random() < 0.001:
                applied = "31/31/2026"
            if rnd.random() < 0.001:
                email = "not-an-email"
            cover = "Hello,\nI'd like the job." if rnd.random() < 0.05 else ""
            stage = rnd.choice(STAGES)
            # the next stage of the list has another slug: every record changes
            stage = STAGES[(STAGES.index(stage) + 1) % len(STAGES)] if changed else stage
            years = str(k % 20 + (100 if changed else 0))
            w.writerow(
                [
                    f"APP-{i}",
                    f"First{k}",
                    f"Last{k}",
                    email,
                    f"+44 20 {k:08d}",
                    job[0],
                    job[1],
                    stage,
                    rnd.choice(["LinkedIn", "Referral", "Careers page"]),
                    applied,
                    years,
                    cover,
                ]
            )


def checkpoint(url: str) -> None:
    """CHECKPOINT, outside any timing: what is measured next starts with no dirty pages to write."""
    with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as conn:
        conn.execute("CHECKPOINT")


def _copy_file(cur: psycopg.Cursor, table: str, path: Path) -> None:
    with open(path, "rb") as f, cur.copy(f"COPY {table} FROM STDIN (FORMAT csv, HEADER true)") as cp:
        while chunk := f.read(1 << 20):
            cp.write(chunk)


def raw_copy(url: str, path: Path, *, unlogged: bool = False) -> float:
    """(a) COPY of the file into an all-text table: the baseline the targets are set against (logged, like any table)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            f"DROP TABLE IF EXISTS raw_copy; CREATE {'UNLOGGED ' if unlogged else ''}TABLE raw_copy ({TEXT_COLUMNS})"
        )
        conn.execute("CHECKPOINT")
        t = time.perf_counter()
        with conn.cursor() as cur:
            _copy_file(cur, "raw_copy", path)
        elapsed = time.perf_counter() - t
        conn.execute("DROP TABLE raw_copy")
    return elapsed


def _stage_file(cur: psycopg.Cursor, path: Path, *, keep: bool = False) -> None:
    # keep: the staging table outlives the transaction (dropped with the session)
    cur.execute(f"CREATE TEMP TABLE raw ({TEXT_COLUMNS}){'' if keep else ' ON COMMIT DROP'}")
    _copy_file(cur, "raw", path)


def single_table_upsert(url: str, path: Path) -> float:
    """The reference technique: COPY into a staging table, then one INSERT ... ON CONFLICT into one table."""
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS upsert_target")
        cur.execute(
            "CREATE TABLE upsert_target (email text PRIMARY KEY, first_name text, last_name text, phone text, "
            "job_code text, stage text, applied_at text)"
        )
        conn.commit()
        cur.execute("CHECKPOINT")
        t = time.perf_counter()
        _stage_file(cur, path)
        cur.execute(
            "INSERT INTO upsert_target SELECT DISTINCT ON (lower(trim(c3))) lower(trim(c3)), c1, c2, c4, c5, c7, c9 "
            "FROM raw ORDER BY lower(trim(c3)) ON CONFLICT (email) DO UPDATE SET first_name = excluded.first_name, "
            "last_name = excluded.last_name, phone = excluded.phone, stage = excluded.stage"
        )
        conn.commit()
        elapsed = time.perf_counter() - t
        cur.execute("DROP TABLE upsert_target")
        conn.commit()
    return elapsed


def schema_floor_parallel(url: str, path: Path, account: uuid.UUID, parts: int) -> float:
    """The schema floor written by PARTS backends at once, as shards write: the bound of a sharded import.

    Each connection stages the whole file (as each shard reads it), creates the jobs it needs
    (committed at once, so the others wait for that only), then writes the users, applications,
    form submissions and audit rows of its part of the rows, split by a hash of the normalised email
    as the import's shards are: no two parts touch the same user. The users are committed before
    their ANALYZE (two ANALYZEs of one table in open transactions would wait for each other). Wall
    time from the start of all to the end of the last.
    """
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CHECKPOINT")
    errors: list[BaseException] = []

    def part(k: int) -> None:
        try:
            _schema_floor_rows(url, path, account, part=(k, parts))
        except BaseException as exc:  # reported by the caller
            errors.append(exc)

    threads = [threading.Thread(target=part, args=(k,)) for k in range(parts)]
    t = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - t
    if errors:
        raise errors[0]
    return elapsed


def _records(url: str, account: uuid.UUID) -> dict[str, int]:
    """The users, applications, form submissions and audit rows of ACCOUNT."""
    tables = ("users", "applications", "form_submissions", "audit_log")
    with psycopg.connect(url) as conn:
        return {
            t: conn.execute(f"SELECT count(*) FROM {t} WHERE account_id = %s", (account,)).fetchone()[0] for t in tables
        }


def schema_floor(url: str, path: Path, account: uuid.UUID, *, bare: bool = False) -> float:
    """The rows a first import writes, written set-based with no logic at all.

    Same file, same record tables (indexes, foreign keys, append-only audit): COPY into staging,
    then users (one per email), applications, form submissions and an audit row for each, with
    plain expressions: no mapping, validation, duplicate matching or error handling. What the
    data model costs on this server; an import cannot be faster than this.

    `bare=True`: the same rows into copies of the three record tables with their columns and
    primary keys only (no foreign keys, no other index, no check) and no audit rows: a bound
    no design of constraints, indexes or audit could beat with these three tables.
    """
    if bare:
        with psycopg.connect(url) as conn, conn.cursor() as cur:
            for t in ("users", "applications", "form_submissions"):
                cur.execute(
                    f"DROP TABLE IF EXISTS bare_{t}; CREATE TABLE bare_{t} (LIKE {t} INCLUDING DEFAULTS, PRIMARY KEY (id))"
                )
            conn.commit()
            cur.execute("CHECKPOINT")
    else:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CHECKPOINT")
    t = time.perf_counter()
    _schema_floor_rows(url, path, account, bare=bare)
    elapsed = time.perf_counter() - t
    if bare:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("DROP TABLE bare_form_submissions, bare_applications, bare_users")
    return elapsed


def _schema_floor_rows(
    url: str, path: Path, account: uuid.UUID, *, bare: bool = False, part: tuple[int, int] | None = None
) -> None:
    """Write the schema floor's rows (see `schema_floor`); PART = (k, n): only the rows of part k of n."""
    a = {"a": str(account)}
    t_users, t_apps, t_forms = (f"bare_{t}" if bare else t for t in ("users", "applications", "form_submissions"))
    audit = (
        "INSERT INTO audit_log (account_id, occurred_at, actor, operation, entity_type, entity_id, change_set_id, before, after) "
        "SELECT %(a)s, now(), 'bench', 'import.create', '{etype}', id, NULL, NULL, {after} FROM {src}"
    )

    def audited(insert: str, etype: str, returning: str, after: str, src: str) -> str:
        return (
            insert
            if bare
            else f"WITH {src} AS ({insert} RETURNING {returning}) " + audit.format(etype=etype, after=after, src=src)
        )

    with psycopg.connect(url) as conn, conn.cursor() as cur:
        cur.execute("SET synchronous_commit = off")
        _stage_file(cur, path, keep=part is not None)
        cur.execute(
            "INSERT INTO jobs (id, account_id, code, title, status, origin, data, created_at, updated_at) "
            "SELECT gen_random_uuid(), %(a)s, c5, max(c6), 'open', 'uploaded', '{}', now(), now() FROM raw GROUP BY c5 "
            "ON CONFLICT DO NOTHING",
            a,
        )
        if part is not None:
            conn.commit()  # the other parts wait for these jobs, not for the whole part
        only = "" if part is None else f" WHERE abs(hashtext(lower(trim(c3)))) %% {part[1]} = {part[0]}"
        # ascending ids, like the import's time-ordered ones (random ones would split index pages)
        ids = ", ".join(
            f"(left(md5(%(a)s || '{k}')::uuid::text, 24) || lpad(to_hex(n), 12, '0'))::uuid AS {k}"
            for k in ("uid", "aid", "fid")
        )
        cur.execute(
            f"CREATE TEMP TABLE s{'' if part else ' ON COMMIT DROP'} AS SELECT {ids}, lower(trim(c3)) AS email, * "
            f"FROM (SELECT row_number() OVER () AS n, * FROM raw) r{only}",
            a,
        )
        cur.execute(
            audited(
                f"INSERT INTO {t_users} (id, account_id, role, email, email_normalized, first_name, last_name, phone, data, "
                "created_at, updated_at) SELECT DISTINCT ON (email) uid, %(a)s, 'candidate', c3, email, c1, c2, c4, '{}', now(), now() "
                "FROM s ORDER BY email",
                "candidates",
                "id, email, first_name, last_name",
                "jsonb_build_object('email', email, 'first_name', first_name)",
                "u",
            ),
            a,
        )
        if part is not None:
            # ANALYZE holds its lock to the end of the transaction, and two ANALYZEs of one table
            # wait for each other: a part analyzes in a transaction of its own, as the import does
            conn.commit()
        cur.execute(f"ANALYZE {t_users}")
        if part is not None:
            conn.commit()
        cur.execute(
            audited(
                f"INSERT INTO {t_apps} (id, account_id, candidate_id, job_id, stage, status, source, external_id, data, "
                "created_at, updated_at) SELECT s.aid, %(a)s, u.id, j.id, lower(trim(s.c7)), 'active', s.c8, s.c0, "
                f"jsonb_build_object('years', s.c10), now(), now() FROM s JOIN {t_users} u ON u.account_id = %(a)s "
                "AND u.email_normalized = s.email JOIN jobs j ON j.account_id = %(a)s AND j.code = s.c5",
                "applications",
                "id, candidate_id, job_id, stage",
                "jsonb_build_object('candidate_id', candidate_id, 'job_id', job_id, 'stage', stage)",
                "x",
            ),
            a,
        )
        cur.execute(
            audited(
                f"INSERT INTO {t_forms} (id, account_id, application_id, form_name, answers, created_at, updated_at) "
                "SELECT fid, %(a)s, aid, 'application', jsonb_build_object('cover_letter', c11), now(), now() FROM s "
                f"WHERE aid IN (SELECT id FROM {t_apps} WHERE account_id = %(a)s)",
                "form_submissions",
                "id, application_id, answers",
                "jsonb_build_object('application_id', application_id, 'answers', answers)",
                "f",
            ),
            a,
        )
        conn.commit()


def schema_floor_reimport(url: str, path: Path, account: uuid.UUID) -> float:
    """The rows a re-import of the file writes, set-based with no logic: the re-import's floor.

    Run after `schema_floor` on the same account: COPY into staging, one audit row per
    application with its before- and after-image, then one UPDATE of the applications by
    external id. No mapping, validation, duplicate rounds or error handling.
    """
    a = {"a": str(account)}
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        cur.execute("ANALYZE applications")
        conn.commit()
        cur.execute("CHECKPOINT")
        t = time.perf_counter()
        cur.execute("SET LOCAL synchronous_commit = off")
        _stage_file(cur, path)
        cur.execute("ANALYZE raw")
        cur.execute(
            "INSERT INTO audit_log (account_id, occurred_at, actor, operation, entity_type, entity_id, change_set_id, before, after) "
            "SELECT %(a)s, now(), 'bench', 'import.update', 'applications', t.id, NULL, "
            "jsonb_build_object('stage', t.stage, 'source', t.source, 'data', t.data), "
            "jsonb_build_object('stage', lower(trim(s.c7)), 'source', s.c8, 'data', t.data || jsonb_build_object('years', s.c10)) "
            "FROM raw s JOIN applications t ON t.account_id = %(a)s AND t.external_id = s.c0",
            a,
        )
        cur.execute(
            "UPDATE applications t SET stage = lower(trim(s.c7)), source = s.c8, data = t.data || jsonb_build_object('years', s.c10), "
            "updated_at = now() FROM raw s WHERE t.account_id = %(a)s AND t.external_id = s.c0",
            a,
        )
        conn.commit()
        return time.perf_counter() - t


def bare_floor_reimport(url: str, path: Path, account: uuid.UUID) -> float:
    """The bare re-import floor: COPY into staging, then one UPDATE ... FROM by external id.

    Run after `schema_floor_reimport` on the same account, with the changed file (every
    application's stage and data differ): the applications' update alone, no audit row, no
    mapping, validation, matching or error handling. What a re-import in which every row is an
    update is measured against.
    """
    a = {"a": str(account)}
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        cur.execute("ANALYZE applications")
        conn.commit()
        cur.execute("CHECKPOINT")
        t = time.perf_counter()
        cur.execute("SET LOCAL synchronous_commit = off")
        _stage_file(cur, path)
        cur.execute("ANALYZE raw")
        cur.execute(
            "UPDATE applications t SET stage = lower(trim(s.c7)), source = s.c8, data = t.data || jsonb_build_object('years', s.c10), "
            "updated_at = now() FROM raw s WHERE t.account_id = %(a)s AND t.external_id = s.c0",
            a,
        )
        conn.commit()
        return time.perf_counter() - t


def _child(url: str, account: str, path: str, force: bool, batch: int, shards: int, q: mp.Queue) -> None:
    from connectors.store import RecordStore
    from pipelines.imports.engine import ImportOptions, run_import

    store = RecordStore(url)
    t = time.perf_counter()
    r = run_import(
        store,
        uuid.UUID(account),
        path,
        ImportOptions(force=force, batch_size=batch, shards=shards),
        failed_rows_dir=tempfile.gettempdir(),
    )
    elapsed = time.perf_counter() - t
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    # the shards' worker processes (the largest of them)
    shard_rss_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    # CPU of the importing process and of its shards' worker processes (all of them, joined)
    own, workers = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    q.put(
        {
            "elapsed": elapsed,
            "rss_mb": rss_mb,
            "shard_rss_mb": shard_rss_mb,
            "cpu_s": own.ru_utime + own.ru_stime,
            "shard_cpu_s": workers.ru_utime + workers.ru_stime,
            "created": r.created,
            "updated": r.updated,
            "skipped": r.skipped,
            "errors": r.errors,
            "rows": r.rows_read,
            "details": r.details,
            "import_id": str(r.import_id),
        }
    )


def _rollback_child(url: str, account: str, import_id: str, q: mp.Queue) -> None:
    from connectors.store import RecordStore
    from pipelines.imports.engine import rollback_import

    store = RecordStore(url)
    t = time.perf_counter()
    out = rollback_import(store, uuid.UUID(account), uuid.UUID(import_id), actor="bench")
    elapsed = time.perf_counter() - t
    q.put(
        {
            "elapsed": elapsed,
            "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "deleted": out["deleted"],
            "restored": out["restored"],
            "conflicts": out["conflicts"],
        }
    )


def _in_child(target, *args) -> dict:  # type: ignore[no-untyped-def]
    """Run TARGET(*args, queue) in a fresh process (its own peak RSS); its queued answer."""
    ctx = mp.get_context("spawn")
    q: mp.Queue = ctx.Queue()
    p = ctx.Process(target=target, args=(*args, q))
    p.start()
    out = q.get()
    p.join()
    return out


def bulkops_import(url: str, account: uuid.UUID, path: Path, force: bool, batch: int, shards: int = 1) -> dict:
    return _in_child(_child, url, str(account), str(path), force, batch, shards)


def run_size(
    url: str,
    rows: int,
    batch: int,
    workdir: Path,
    shards: tuple[int, ...] = (1,),
    first_only: bool = False,
    bare_only: bool = False,
    no_rollback: bool = False,
    floor_runs: int = 3,
) -> dict:
    """The figures of ROWS rows; the imports once per entry of SHARDS (its count of shards), each into an account of its own."""
    from connectors.store import RecordStore

    path = workdir / f"applications_{rows}.csv"
    if not path.exists():
        generate(path, rows)
    changed_path = workdir / f"applications_{rows}_changed.csv"
    if not changed_path.exists():
        generate(changed_path, rows, changed=True)
    size_mb = path.stat().st_size / 1e6
    plain = url.replace("+psycopg", "")
    copy_s = raw_copy(plain, path)
    copy_unlogged_s = raw_copy(plain, path, unlogged=True)
    upsert_s = float("nan") if bare_only else single_table_upsert(plain, path)
    store = RecordStore(url)
    floor_account = store.ensure_account(f"floor-{uuid.uuid4().hex[:8]}")
    parallel_account = store.ensure_account(f"floor-parallel-{uuid.uuid4().hex[:8]}")
    accounts = [store.ensure_account(f"bench-{n}-{uuid.uuid4().hex[:8]}") for n in shards]
    store.dispose()
    bare_s = schema_floor(plain, path, floor_account, bare=True)
    # bare_only: the bare floor alone (the schema floors take minutes at 1M rows on a loaded machine)
    floor_s = float("nan") if bare_only else schema_floor(plain, path, floor_account)
    # with shards, the schema floor written by as many backends at once (an account of its own)
    parts = max(shards)
    parallel_s = schema_floor_parallel(plain, path, parallel_account, parts) if parts > 1 and not bare_only else None
    # the parallel floor wrote what the single one did (a part writing nothing would flatter it)
    floor_rows = [] if parallel_s is None else [_records(plain, a) for a in (floor_account, parallel_account)]
    floor_re_s = float("nan") if bare_only else schema_floor_reimport(plain, path, floor_account)
    # the median of FLOOR_RUNS runs (each updates every application again)
    bare_re_runs = (
        [] if bare_only else [bare_floor_reimport(plain, changed_path, floor_account) for _ in range(floor_runs)]
    )
    bare_re_s = statistics.median(bare_re_runs) if bare_re_runs else float("nan")
    raw_rps = rows / copy_s

    def rate(seconds: float) -> dict | None:
        if seconds != seconds:  # not measured (--bare-only)
            return None
        return {"s": round(seconds, 2), "rows_s": round(rows / seconds), "x_copy": round(copy_s / seconds, 3)}

    out = {
        "rows": rows,
        "file_mb": round(size_mb, 1),
        "batch_size": batch,
        "load_avg": [round(x, 1) for x in os.getloadavg()],
        "raw_copy_s": round(copy_s, 2),
        "raw_copy_rows_s": round(raw_rps),
        "raw_copy_unlogged_rows_s": round(rows / copy_unlogged_s),
        "single_table_upsert": rate(upsert_s),
        "schema_floor": rate(floor_s),
        "bare_floor": rate(bare_s),
        "schema_floor_reimport": rate(floor_re_s),
        "bare_floor_reimport": rate(bare_re_s),
        "bare_floor_reimport_runs_s": [round(x, 2) for x in bare_re_runs],
        # the bounds of the targets: the schema floors (these records with their keys, indexes and
        # audit, no logic) against the bare floors; no import keeping those guarantees beats them
        "schema_floor_vs_bare": round(bare_s / floor_s, 3),
        # the bound of an import in that many shards (null without shards)
        "schema_floor_parallel": None if parallel_s is None else {**(rate(parallel_s) or {}), "backends": parts},
        "schema_floor_records": floor_rows,
        "schema_floor_parallel_vs_bare": None if parallel_s is None else round(bare_s / parallel_s, 3),
        "schema_floor_reimport_vs_bare_re": round(bare_re_s / floor_re_s, 3),
    }
    by_shards = []
    for n, account in zip(shards, accounts, strict=True):
        figures = imports(url, account, path, changed_path, batch, n, first_only, no_rollback)
        figures["first_vs_bare"] = round(bare_s / figures["first_s"], 3)
        figures["first_vs_floor"] = round(floor_s / figures["first_s"], 2)
        if n > 1 and parallel_s is not None:
            figures["first_vs_parallel_floor"] = round(parallel_s / figures["first_s"], 2)
        figures["first_ratio"] = round(rows / figures["first_s"] / raw_rps, 3)
        figures["first_rows_s"] = round(rows / figures["first_s"])
        if not first_only:
            figures["reimport_rows_s"] = round(rows / figures["reimport_s"])
            figures["reimport_ratio"] = round(rows / figures["reimport_s"] / raw_rps, 3)
            figures["reimport_vs_floor"] = round(floor_re_s / figures["reimport_s"], 2)
            figures["update_rows_s"] = round(rows / figures["update_s"])
            figures["update_ratio"] = round(rows / figures["update_s"] / raw_rps, 3)
            figures["update_vs_floor"] = round(floor_re_s / figures["update_s"], 2)
            # the issue 15 target: an all-updates re-import against the bare re-import floor
            figures["update_vs_bare_re"] = round(bare_re_s / figures["update_s"], 3)
            figures["reimport_vs_bare_re"] = round(bare_re_s / figures["reimport_s"], 3)
        figures["load_avg"] = [round(x, 1) for x in os.getloadavg()]
        by_shards.append(figures)
        # each import's figures as it ends (a long run stopped half way still tells something)
        shown = {k: v for k, v in figures.items() if not k.endswith("_details")}
        floors = {"bare_floor_s": round(bare_s, 2), "bare_floor_reimport_s": round(bare_re_s, 2)}
        print(json.dumps({"rows": rows, **floors, **shown}), file=sys.stderr, flush=True)
    # the first count's figures at the top, as before; every count's under by_shards, in run order
    out.update(by_shards[0])
    if len(shards) > 1:
        out["by_shards"] = [
            {k: v for k, v in f.items() if not k.endswith("_details") and not k.startswith("rollback")}
            for f in by_shards
        ]
    return out


def _import_figures(name: str, r: dict) -> dict:
    out = {
        f"{name}_s": round(r["elapsed"], 2),
        f"{name}_rss_mb": round(r["rss_mb"]),
        f"{name}_counts": {k: r[k] for k in ("created", "updated", "skipped", "errors")},
    }
    if name == "reimport":
        out["reimport_details"] = r["details"]
    return out


class BackendCpu:
    """CPU seconds of the server backends serving one database (with their parallel workers).

    Sampled from /proc every 0.1 s while the tool runs (the server is on this machine): a
    backend's last sample stands for its total, so up to 0.1 s of each may be missed.
    """

    def __init__(self, database: str) -> None:
        self.title = f" {database} ".encode()
        self.seen: dict[tuple[int, int], int] = {}  # (pid, start time) -> clock ticks
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        ours = {pid for pid, _ in self.seen}
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                with open(f"/proc/{entry.name}/cmdline", "rb") as f:
                    title = f.read()
                if not title.startswith(b"postgres: "):
                    continue
                worker = b"parallel worker for PID " in title
                if worker and int(title.split(b"PID ")[1].split()[0].strip(b"\0")) not in ours:
                    continue
                if not worker and self.title not in title:
                    continue
                with open(f"/proc/{entry.name}/stat", "rb") as f:
                    fields = f.read().rsplit(b")", 1)[1].split()
            except (OSError, IndexError, ValueError):
                continue  # ended between the listing and the read
            self.seen[(int(entry.name), int(fields[19]))] = int(fields[11]) + int(fields[12])

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            self._sample()

    def __enter__(self) -> BackendCpu:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def seconds(self) -> float:
        return sum(self.seen.values()) / os.sysconf("SC_CLK_TCK")


def imports(
    url: str,
    account: uuid.UUID,
    path: Path,
    changed_path: Path,
    batch: int,
    shards: int,
    first_only: bool,
    no_rollback: bool = False,
) -> dict:
    """The first import, a re-import, an all-updates import and their rollbacks (newest first, unless
    NO_ROLLBACK), with SHARDS."""
    checkpoint(url)
    with BackendCpu(sa.make_url(url).database) as backends:
        first = bulkops_import(url, account, path, False, batch, shards)
    out = {
        "shards": shards,
        "first_s": round(first["elapsed"], 2),
        "first_rss_mb": round(first["rss_mb"]),
        "first_shard_rss_mb": round(first["shard_rss_mb"]),
        "first_cpu_s": round(first["cpu_s"], 1),
        "first_shard_cpu_s": round(first["shard_cpu_s"], 1),
        "first_backend_cpu_s": round(backends.seconds, 1),
        "first_counts": {k: first[k] for k in ("created", "updated", "skipped", "errors")},
        "first_details": first["details"],
    }
    if first_only:
        return out
    checkpoint(url)
    again = bulkops_import(url, account, path, True, batch, shards)
    checkpoint(url)
    update = bulkops_import(url, account, changed_path, False, batch, shards)
    out.update(_import_figures("reimport", again) | _import_figures("update", update))
    if no_rollback:
        return out
    # undo the changed file's import (every application gets its before-image back), the
    # re-import, then the first import (everything it created is deleted): set-based, audited
    undo_update = _in_child(_rollback_child, url, str(account), update["import_id"])
    undo_re = _in_child(_rollback_child, url, str(account), again["import_id"])
    undo_first = _in_child(_rollback_child, url, str(account), first["import_id"])
    out.update(
        {
            "rollback_update": {
                "s": round(undo_update["elapsed"], 2),
                "rss_mb": round(undo_update["rss_mb"]),
                "restored": undo_update["restored"].get("applications"),
            },
            "rollback_reimport": {
                "s": round(undo_re["elapsed"], 2),
                "restored": undo_re["restored"].get("applications"),
                "rss_mb": round(undo_re["rss_mb"]),
            },
            "rollback_first": {
                "s": round(undo_first["elapsed"], 2),
                "deleted": undo_first["deleted"],
                "rss_mb": round(undo_first["rss_mb"]),
            },
        }
    )
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--rows-small", type=int, default=250_000, help="second size, to show memory stays flat (0 = skip)")
    ap.add_argument("--batch-size", type=int, default=20_000)
    ap.add_argument("--workdir", default=None, help="where the files are generated (kept if given, and reused)")
    ap.add_argument(
        "--shards",
        default="1",
        help="comma-separated shard counts (e.g. 1,2,1,2): the imports run once per entry, each into its own account",
    )
    ap.add_argument(
        "--floor-runs", type=int, default=3, help="runs of the bare re-import floor; the ratio takes their median"
    )
    ap.add_argument("--first-only", action="store_true", help="only the first import (no re-import, update, rollback)")
    ap.add_argument(
        "--no-rollback",
        action="store_true",
        help="skip the rollbacks (the longest part of a 1M run on a loaded machine)",
    )
    ap.add_argument(
        "--bare-only", action="store_true", help="of the floors, only the bare floor (no schema floors, no upsert)"
    )
    args = ap.parse_args()
    shards = tuple(int(n) for n in args.shards.split(","))
    from connectors.store import make_engine, migrate

    name = f"bulkops_importbench_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(ADMIN.replace("postgresql://", "postgresql+psycopg://"), isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = (
        sa.make_url(ADMIN.replace("postgresql://", "postgresql+psycopg://"))
        .set(database=name)
        .render_as_string(hide_password=False)
    )
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="bulkops-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        engine = make_engine(url)
        migrate.upgrade(engine)
        engine.dispose()
        for rows in [r for r in (args.rows_small, args.rows) if r]:
            print(
                json.dumps(
                    run_size(
                        url,
                        rows,
                        args.batch_size,
                        workdir,
                        shards,
                        args.first_only,
                        args.bare_only,
                        args.no_rollback,
                        args.floor_runs,
                    )
                ),
                flush=True,
            )
    finally:
        with admin.connect() as c:
            c.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
