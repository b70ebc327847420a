"""Write paths of file imports: stage a batch, then set-based SQL decides and writes.

One staging table per import (a temp table on the import's connection). Each batch:
load it (COPY on PostgreSQL, executemany on SQLite), resolve references (jobs by code,
candidates by normalised email, applications by external id), match duplicates, then per
duplicate round insert new records, update matched ones (audit rows carry the before-image
that rollback restores), queue flagged rows, and report counts. The caller wraps a batch in one
transaction together with the import's counters, so a batch is all or nothing.

Provenance: created records carry `import_id`; every created or updated record has an audit
row with the import id, the actor, before and after.
"""

from __future__ import annotations

import contextlib
import io
import os
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import sqlalchemy as sa

from connectors.store.schema import ENTITY_TABLES

# a matched row whose values equal its record's is `unchanged` in the staging table, reported
# as skipped with details["unchanged"]
OUTCOMES = ("created", "updated", "skipped", "flagged")
# staged columns that joins and filters use
STAGE_KEYS = ("email_norm", "external_id", "job_code", "code", "application_external_id")
# staged columns the statements fill in (all NULL when a batch is loaded)
STATE_COLUMNS = ("job_id", "candidate_id", "match_id", "ref_id", "cand_new", "outcome", "err", "err_col")
# the record tables each entity's import looks records up in (and grows)
LOOKUP_TABLES = {
    "applications": ("applications", "users", "jobs"),
    "candidates": ("users",),
    "jobs": ("jobs",),
    "contracts": ("contracts", "applications"),
}
# re-analyze a lookup table once the rows an import added reach this share of the account's rows
# it held at the last ANALYZE (so: each time the import doubles the account there), and at least
ANALYZE_GROWTH = 1.0
ANALYZE_MIN_ROWS = 10_000
TIMESTAMP_COLUMNS = ("applied_at",)
# every audit row an import or a rollback writes: INSERT ... SELECT of these columns
AUDIT_INSERT = "INSERT INTO audit_log (account_id, occurred_at, actor, operation, entity_type, entity_id, import_id, before, after) "
# PostgreSQL: held by each import batch and each rollback until it commits, per account (:acct)
ACCOUNT_IMPORT_LOCK = "SELECT pg_advisory_xact_lock(hashtext('bulkops.import'), hashtext(CAST(:acct AS text)))"
# the duplicate strategy -> outcome of a matched row
DUPLICATE_OUTCOME = {"skip": "skipped", "update": "updated", "create": "created", "flag": "flagged"}


@dataclass
class BatchOutcome:
    counts: dict[str, int]
    errors: list[tuple[int, str, str]]  # (row_no, column, reason) found by the database
    details: dict[str, int] = field(default_factory=dict)


def _id_prefix() -> str:
    """The first 24 hex digits of time-ordered ids (UUIDv7 layout: ms timestamp, version 7,
    variant, random bits); ids are prefix + the row number as 8 hex digits, so one import's
    ids ascend in file order and index inserts append instead of landing on random pages."""
    ms = time.time_ns() // 1_000_000
    r = int.from_bytes(os.urandom(6), "big")
    hexed = f"{ms & ((1 << 48) - 1):012x}7{(r >> 36) & 0xFFF:03x}{0x8 | ((r >> 34) & 0x3):x}{(r >> 22) & 0xFFF:03x}{(r >> 6) & 0xFFFF:04x}"
    return f"{hexed[:8]}-{hexed[8:12]}-{hexed[12:16]}-{hexed[16:20]}-{hexed[20:24]}"


@contextlib.contextmanager
def serialized_batches(conn: sa.Connection) -> Iterator[None]:
    """On SQLite, make CONN's transactions start with `BEGIN IMMEDIATE` while the block runs.

    A batch reads the records it matches against, then writes; begun deferred, a batch that read
    before a concurrent import's batch committed cannot write any more ("database is locked",
    which no busy timeout cures). Immediate, it waits (busy_timeout) for the write lock first and
    then reads what the other batch committed. PostgreSQL batches take an advisory lock instead
    (`write_batch`).
    """
    if conn.dialect.name != "sqlite":
        yield
        return
    dbapi = conn.connection.dbapi_connection
    before = dbapi.isolation_level
    dbapi.isolation_level = "IMMEDIATE"
    try:
        yield
    finally:
        dbapi.isolation_level = before


def _db_uuid(pg: bool, value: uuid.UUID) -> Any:
    """A uuid bound into raw SQL as each dialect stores it (SQLite: 32 hex digits)."""
    return value if pg else value.hex


def _db_now(pg: bool) -> Any:
    """Now, bound into raw SQL as each dialect stores timestamps."""
    now = datetime.now(UTC)
    return now if pg else now.strftime("%Y-%m-%d %H:%M:%S.%f")


def _chunks(items: list, n: int) -> list[list]:
    return [items[i : i + n] for i in range(0, len(items), n)] or [[]]


def _json_object(pg: bool, pairs: list[tuple[str, str]]) -> str:
    """SQL for a JSON object from (key, sql expression) pairs (chunks: jsonb_build_object takes 100 args)."""
    if not pairs:
        return "'{}'::jsonb" if pg else "'{}'"
    parts = []
    for chunk in _chunks(pairs, 40):
        args = ", ".join(f"'{k.replace(chr(39), chr(39) * 2)}', {e}" for k, e in chunk)
        parts.append(f"jsonb_build_object({args})" if pg else f"json_object({args})")
    if pg:
        return " || ".join(parts)
    out = parts[0]
    for p in parts[1:]:
        out = f"json_patch({out}, {p})"
    return out


def same_as_stored(pg: bool, table: sa.Table, assignments: Mapping[str, str], alias: str = "t") -> str:
    """SQL: true when writing ASSIGNMENTS would leave the row `alias` of TABLE exactly as it is.

    The "row equals stored" rule of every writer of records (imports, and syncs next): such a
    row is unchanged, and gets no UPDATE and no audit row. ASSIGNMENTS maps columns of TABLE to
    the SQL expressions an UPDATE would set them to (they may refer to `alias`). NULL equals
    NULL; JSON columns compare as JSON (jsonb equality; on SQLite the minified text, whose key
    order json_patch keeps); SQLite timestamps whose text differs compare as instants.
    """
    parts = []
    for name, expr in assignments.items():
        col, stored = table.c[name], f"{alias}.{name}"
        if pg:
            parts.append(f"{stored} IS NOT DISTINCT FROM ({expr})")
        elif isinstance(col.type, sa.JSON):
            parts.append(f"json({stored}) IS json({expr})")
        elif isinstance(col.type, sa.DateTime):
            parts.append(f"({stored} IS ({expr}) OR julianday({stored}) = julianday({expr}))")
        else:
            parts.append(f"{stored} IS ({expr})")
    return " AND ".join(parts) or "1 = 1"


class WriteFailed(Exception):
    """The database refused a batch; the message says what happened in words (never the SQL).

    `__cause__` is the database error: a transient one (lost connection, lock timeout) is
    retried by the caller's policy, and the batch was rolled back as a whole.
    """


def _db_reason(exc: sa.exc.DBAPIError) -> str:
    """The database's own message for EXC: its first line, never the statement or its parameters."""
    orig = exc.orig
    diag = getattr(orig, "diag", None)
    text = ""
    if orig is not None:
        text = getattr(diag, "message_primary", None) or next(iter(str(orig).strip().splitlines()), "")
    column = getattr(diag, "column_name", None)
    if column and column not in text:
        text += f" (column {column})"
    if exc.connection_invalidated and "connection" not in text:
        text = f"the connection to the database was lost: {text}"
    return text[:300] or type(orig or exc).__name__


class ImportWriter:
    """Set-based import of staged batches for one entity, on one connection.

    Match keys (job codes, external ids, the application external ids of contracts) ignore case
    and surrounding whitespace unless `case_sensitive_keys`: lookups compare lower(stored) with
    lower(staged), served by the (account_id, lower(key)) indexes of migration 0008. A record
    keeps the spelling it was created with. Where an account holds keys that differ only in case
    (written before keys were folded), the oldest record matches.
    """

    def __init__(
        self,
        conn: sa.Connection,
        *,
        entity: str,
        account_id: uuid.UUID,
        import_id: uuid.UUID,
        actor: str,
        columns: list[str],
        json_spec: dict[str, str | None],
        on_duplicate: str = "update",
        duplicate_keys: tuple[str, ...] = ("external_id", "email"),
        create_missing_jobs: bool = True,
        default_stage: str = "applied",
        form_name: str = "application",
        case_sensitive_keys: bool = False,
    ) -> None:
        self.conn = conn
        self.pg = conn.dialect.name == "postgresql"
        self.entity = entity
        self.columns = columns  # staged data columns after row_no, rnd
        self.json_spec = json_spec
        self.on_duplicate = on_duplicate
        self.duplicate_keys = duplicate_keys
        self.create_missing_jobs = create_missing_jobs
        self.default_stage = default_stage
        self.form_name = form_name
        self.case_sensitive_keys = case_sensitive_keys
        self.stage = f"import_stage_{uuid.uuid4().hex[:12]}"
        self.params: dict[str, Any] = {
            "acct": self._uuid(account_id),
            "imp": self._uuid(import_id),
            "actor": actor,
            "form": form_name,
            "default_stage": default_stage,
        }
        # PostgreSQL: ids of created records (application/candidate/job..., user, form submission)
        self.prefix = {"rec": _id_prefix(), "user": _id_prefix(), "form": _id_prefix()}
        # lookup table -> [account's rows at the last ANALYZE (-1: never analyzed), rows added since]
        self.table_growth: dict[str, list[float]] | None = None
        # what write_batch is doing, for the message of a WriteFailed
        self.step = ""

    # -- dialect helpers

    def _uuid(self, value: uuid.UUID) -> Any:
        return _db_uuid(self.pg, value)

    def _now(self) -> Any:
        return _db_now(self.pg)

    @property
    def newid(self) -> str:
        return "gen_random_uuid()" if self.pg else "lower(hex(randomblob(16)))"

    def rowid(self, kind: str, alias: str = "s") -> str:
        """A new record id derived from the staged row (time-ordered on PostgreSQL)."""
        if not self.pg:
            return self.newid
        return f"('{self.prefix[kind]}' || lpad(to_hex({alias}.row_no), 8, '0'))::uuid"

    def obj(self, pairs: list[tuple[str, str]]) -> str:
        """A JSON object from (key, sql expression) pairs."""
        return _json_object(self.pg, pairs)

    def obj_nonnull(self, pairs: list[tuple[str, str]]) -> str:
        if not pairs:
            return self.obj([])
        return f"jsonb_strip_nulls({self.obj(pairs)})" if self.pg else f"json_patch('{{}}', {self.obj(pairs)})"

    def merge(self, left: str, right: str) -> str:
        return f"({left} || {right})" if self.pg else f"json_patch({left}, {right})"

    def js(self, expr: str) -> str:
        """A stored JSON column as a JSON value inside obj()."""
        return expr if self.pg else f"json({expr})"

    def json_of(self, kind: str, alias: str = "s") -> str:
        """The staged JSON object of `kind` (one text column, built by validation.json_objects)."""
        col = self.json_spec.get(kind)
        if not col:
            return self.obj([])
        return f"CAST({alias}.{col} AS jsonb)" if self.pg else f"json({alias}.{col})"

    def run(self, sql: str, **extra: Any) -> sa.CursorResult:
        return self.conn.execute(sa.text(sql), {**self.params, **extra})

    # -- match keys

    def key(self, expr: str) -> str:
        """SQL: the value match keys compare (and group) by."""
        return expr if self.case_sensitive_keys else f"lower({expr})"

    def key_eq(self, stored: str, staged: str) -> str:
        """SQL: a stored key equals a staged one; lower(stored) is what the key indexes hold."""
        folded = f"lower({stored}) = lower({staged})"
        return f"{folded} AND {stored} = {staged}" if self.case_sensitive_keys else folded

    def kept_key(self, stored: str, staged: str) -> str:
        """SQL: the key an update writes: the record keeps its spelling of an equal key."""
        if self.case_sensitive_keys:
            return staged
        return f"CASE WHEN lower({stored}) = lower({staged}) THEN {stored} ELSE {staged} END"

    # -- staging

    def create_stage(self) -> None:
        try:
            self._create_stage()
        except sa.exc.DBAPIError as exc:
            what = f"creating the staging table of {len(self.columns)} columns"
            raise WriteFailed(f"{what} failed: {_db_reason(exc)}") from exc

    def _create_stage(self) -> None:
        S = self.stage
        if self.pg:
            cols = ", ".join(f"{c} {'timestamptz' if c in TIMESTAMP_COLUMNS else 'text'}" for c in self.columns)
            ddl = (
                f"CREATE TEMP TABLE {S} (row_no bigint, rnd int, {cols}, "
                f"new_id uuid GENERATED ALWAYS AS (('{self.prefix['rec']}' || lpad(to_hex(row_no), 8, '0'))::uuid) STORED, "
                "job_id uuid, candidate_id uuid, match_id uuid, ref_id uuid, cand_new int, outcome text, err text, err_col text) WITH (fillfactor = 20)"
            )
        else:
            cols = ", ".join(self.columns)
            ddl = (
                f"CREATE TEMP TABLE {S} (row_no INTEGER, rnd INTEGER, {cols}, new_id TEXT DEFAULT (lower(hex(randomblob(16)))), "
                "job_id, candidate_id, match_id, ref_id, cand_new, outcome, err, err_col)"
            )
        if self.pg:
            # the staging table lives in local buffers: 8 MB by default would spill every batch to
            # disk; the setting only takes before the session's first temp table (else keep it)
            try:
                with self.conn.begin_nested():
                    self.conn.exec_driver_sql("SET temp_buffers = '256MB'")
            except sa.exc.DBAPIError:
                pass
        self.conn.exec_driver_sql(ddl)
        self.conn.exec_driver_sql(f"CREATE INDEX {S}_rnd ON {S} (rnd)")
        self.conn.exec_driver_sql(f"CREATE INDEX {S}_row ON {S} (row_no)")

    def drop_stage(self) -> None:
        self.conn.exec_driver_sql(f"DROP TABLE IF EXISTS {self.stage}")

    def load(self, table: pa.Table) -> None:
        S = self.stage
        names = ["row_no", "rnd", *self.columns]
        table = table.select(names)
        if self.pg:
            # TRUNCATE, not DELETE: temp tables are never vacuumed, dead rows would pile up batch after batch
            self.conn.exec_driver_sql(f"TRUNCATE {S}")
            buf = io.BytesIO()
            pcsv.write_csv(table, buf, pcsv.WriteOptions(include_header=False, batch_size=65536))
            raw = self.conn.connection.dbapi_connection
            with raw.cursor() as cur, cur.copy(f"COPY {S} ({', '.join(names)}) FROM STDIN (FORMAT csv)") as cp:
                cp.write(buf.getbuffer())
            # the planner needs the join keys' statistics, not those of every text column
            keys = [c for c in ("rnd", *STAGE_KEYS) if c in names]
            self.conn.exec_driver_sql(f"ANALYZE {S} (row_no, {', '.join(keys)}, {', '.join(STATE_COLUMNS)})")
        else:
            self.conn.exec_driver_sql(f"DELETE FROM {S}")
            arrays = []
            for name in names:
                col = table.column(name)
                if pa.types.is_timestamp(col.type):
                    col = pc.strftime(col, "%Y-%m-%d %H:%M:%S")
                arrays.append(col.to_pylist())
            marks = ", ".join("?" * len(names))
            self.conn.exec_driver_sql(
                f"INSERT INTO {S} ({', '.join(names)}) VALUES ({marks})", list(zip(*arrays, strict=False))
            )

    # -- planner statistics

    def refresh_statistics(self) -> list[str]:
        """ANALYZE the lookup tables whose statistics no longer describe this account's rows (`_refresh_statistics`)."""
        try:
            return self._refresh_statistics()
        except sa.exc.DBAPIError as exc:
            raise WriteFailed(
                f"refreshing the planner statistics of {', '.join(LOOKUP_TABLES[self.entity])} failed: "
                f"{_db_reason(exc)}"
            ) from exc

    def _refresh_statistics(self) -> list[str]:
        """ANALYZE the lookup tables whose statistics no longer describe this account's rows.

        Call between batches, in a transaction of its own (ANALYZE holds a lock until commit). A
        table gets one when it was never analyzed, when the account had no rows there before
        this import added some, and when this import has doubled the account's rows since the
        last one (at least ANALYZE_MIN_ROWS). Statistics that miss the
        account (a new tenant in a table another account filled) make the planner believe it has
        no rows, and then any index starting with account_id looks as good as the right one: a
        lookup walked all the account's rows per probe, minutes per batch. Autovacuum would do
        this when it runs and catches up; an import cannot count on it. PostgreSQL only; returns
        the tables analyzed.
        """
        if not self.pg:
            return []
        if self.table_growth is None:
            self.table_growth = {}
            for table in LOOKUP_TABLES[self.entity]:
                analyzed = self.conn.execute(
                    sa.text("SELECT reltuples >= 0 FROM pg_class WHERE oid = CAST(:t AS regclass)"), {"t": table}
                ).scalar()
                mine = self.conn.execute(
                    sa.text(f"SELECT count(*) FROM {table} WHERE account_id = :acct"), self.params
                ).scalar()
                self.table_growth[table] = [float(mine) if analyzed else -1.0, 0.0]
        done = []
        for table, (size, added) in self.table_growth.items():
            if size < 0 or (size == 0 and added > 0) or added >= max(ANALYZE_MIN_ROWS, ANALYZE_GROWTH * size):
                self.conn.exec_driver_sql(f"ANALYZE {table}")
                self.table_growth[table] = [max(size, 0.0) + added, 0.0]
                done.append(table)
        return done

    def _analyze_new_account(self) -> None:
        """Mid-batch ANALYZE of the tables where the account had no rows before this import.

        The later rounds of the first batch look up rows its first round wrote; statistics
        without the account would send each of those lookups through all of them.
        """
        for table, growth in (self.table_growth or {}).items():
            if growth[0] == 0:
                self.conn.exec_driver_sql(f"ANALYZE {table}")
                growth[0] = 1.0  # known now: the doubling rule takes over

    def _grew(self, table: str, rows: int) -> None:
        if self.table_growth is not None and table in self.table_growth:
            self.table_growth[table][1] += rows

    # -- one batch

    def write_batch(self, table: pa.Table) -> BatchOutcome:
        """Stage and write one batch (inside the caller's transaction).

        Raises:
            WriteFailed: the database refused a statement; the message names the rows and the
                step, and says why in words. The caller rolls the batch back.
        """
        self.step = "loading them into the staging table"
        try:
            return self._write_batch(table)
        except sa.exc.DBAPIError as exc:
            bounds = pc.min_max(table.column("row_no")).as_py()
            rows = f"rows {bounds['min']}-{bounds['max']}"
            raise WriteFailed(f"{rows} were not written: {self.step} failed: {_db_reason(exc)}") from exc

    def _write_batch(self, table: pa.Table) -> BatchOutcome:
        e = self.entity
        if self.pg:
            # a batch commits together with its counters, so a commit lost in a server crash is
            # simply redone by the resume; JIT compilation costs more than it saves here
            self.conn.exec_driver_sql("SET LOCAL synchronous_commit = off")
            self.conn.exec_driver_sql("SET LOCAL jit = off")
            self.conn.exec_driver_sql("SET LOCAL work_mem = '64MB'")
        self.load(table)
        if self.pg:
            # one batch at a time per account: a concurrent import's batch (the queue runs two)
            # would not see this one's uncommitted records, create the same job or candidate
            # again and fail on the unique key, or duplicate an application that has none. The
            # lock waits for the other batch's commit; the statements below then see its rows.
            self.step = "waiting for the account's other imports"
            self.run(ACCOUNT_IMPORT_LOCK)
        self.params["now"] = self._now()
        details: dict[str, int] = {}
        if e == "applications":
            self.step = "finding or creating their jobs"
            details["jobs_created"] = self._resolve_jobs()
        if e == "contracts":
            self.step = "finding their applications"
            self._resolve_applications()
        rounds = self.conn.execute(sa.text(f"SELECT max(rnd) FROM {self.stage}")).scalar() or 0
        r = 1
        while r <= rounds:
            self.step = f"matching existing {e}"
            bumped = self._match(r)
            rounds = max(rounds, r + 1) if bumped else rounds
            if e == "applications":
                self.step = "finding or creating their candidates"
                details["candidates_created"] = details.get("candidates_created", 0) + self._resolve_candidates(r)
            self.step = f"creating {e}"
            self._create(r)
            self.step = f"updating {e}"
            self._update(r)
            self.step = "flagging duplicates for review"
            self._flag(r)
            if r == 1 and rounds > 1:
                self.step = "refreshing planner statistics"
                self._analyze_new_account()
            r += 1
        self.step = "counting the outcomes"
        counts = dict.fromkeys(OUTCOMES, 0)
        for outcome, n in self.run(f"SELECT outcome, count(*) FROM {self.stage} WHERE err IS NULL GROUP BY outcome"):
            counts[outcome] = n
        # rows equal to their record were written as nothing: skipped, and counted apart
        details["unchanged"] = counts.pop("unchanged", 0)
        counts["skipped"] += details["unchanged"]
        self._grew(ENTITY_TABLES[self.entity].name, counts["created"])
        self._grew("users", details.get("candidates_created", 0))
        self._grew("jobs", details.get("jobs_created", 0))
        errors = [
            (int(row_no), col, err)
            for row_no, col, err in self.run(
                f"SELECT row_no, err_col, err FROM {self.stage} WHERE err IS NOT NULL ORDER BY row_no"
            )
        ]
        return BatchOutcome(counts=counts, errors=errors, details=details)

    def sample(self, limit: int = 20) -> list[dict]:
        """The staged rows with their outcome (dry run preview)."""
        cols = ", ".join(c for c in self.columns if not c.startswith("x_"))
        rows = self.run(
            f"SELECT row_no, coalesce(outcome, 'error') AS outcome, err, {cols} FROM {self.stage} ORDER BY row_no LIMIT {int(limit)}"
        )
        return [{k: (str(v) if isinstance(v, datetime) else v) for k, v in row._mapping.items()} for row in rows]

    # -- lookups

    def probe(self, column: str, record: str, where: str, **extra: Any) -> sa.CursorResult:
        """Set `column` of the staged rows matching `where` to the id `record` finds, where it finds one.

        `record` is a scalar subquery on the record tables that refers to the staged row as `s`
        (one index probe per staged row; `where` must include `column IS NULL`). A subquery, not
        a join, on purpose: the planner cannot turn it around. As a join it hashed the account's
        whole table every batch, or, when the statistics missed the account's rows, drove from
        the record table and scanned the staging table once per record.
        """
        S = self.stage
        # `column` is NULL on every row `where` selects, so rows without a match keep NULL
        return self.run(f"UPDATE {S} AS s SET {column} = ({record}) WHERE {where}", **extra)

    # -- references

    def _resolve_jobs(self) -> int:
        S = self.stage
        need = f"{S}.job_id IS NULL AND {S}.job_code IS NOT NULL AND {S}.err IS NULL"
        k = self.key(f"{S}.job_code")

        def lookup() -> None:
            # one index probe per distinct code of the batch (the oldest job with it), hashed back
            # onto the rows (a nested loop, which the planner takes when its statistics see few
            # codes, scans the batch once per code)
            if self.pg:
                was = self.conn.exec_driver_sql("SELECT current_setting('enable_nestloop')").scalar()
                self.conn.exec_driver_sql("SET LOCAL enable_nestloop = off")
            # materialized: inlined, the probe ran once per row instead of once per code
            self.run(
                f"WITH c AS MATERIALIZED (SELECT d.k, (SELECT j.id FROM jobs j WHERE j.account_id = :acct "
                f"AND {self.key_eq('j.code', 'd.code')} ORDER BY j.created_at, j.id LIMIT 1) AS id "
                f"FROM (SELECT {k} AS k, min({S}.job_code) AS code FROM {S} WHERE {need} GROUP BY {k}) d) "
                f"UPDATE {S} SET job_id = c.id FROM c WHERE {need} AND c.id IS NOT NULL AND c.k = {k}"
            )
            if self.pg:
                # back to the value it had (the server's or the session's), not to PostgreSQL's default
                self.conn.execute(sa.text("SELECT set_config('enable_nestloop', :was, true)"), {"was": was})

        lookup()
        created = 0
        if self.create_missing_jobs:
            # one job per code, spelled as its first row spells it
            first = (
                f"SELECT job_code, coalesce(title, job_code) AS title FROM (SELECT {S}.job_code, "
                f"max({S}.job_title) OVER w AS title, row_number() OVER (w ORDER BY {S}.row_no) AS n "
                f"FROM {S} WHERE {need} WINDOW w AS (PARTITION BY {k})) f WHERE n = 1"
            )
            values = f"f.job_code, f.title, 'open', 'uploaded', '{{}}', :imp, :now, :now FROM ({first}) f"
            after = self.obj([("code", "j.code"), ("title", "j.title")])
            if self.pg:
                # the audit rows come from RETURNING; then the lookup finds the new jobs
                created = self.run(
                    "WITH j AS (INSERT INTO jobs (id, account_id, code, title, status, origin, data, import_id, created_at, updated_at) "
                    f"SELECT gen_random_uuid(), :acct, {values} "
                    "RETURNING id, code, title) "
                    f"{AUDIT_INSERT}"
                    f"SELECT :acct, :now, :actor, 'import.create', 'jobs', j.id, :imp, NULL, {after} FROM j"
                ).rowcount
                if created:
                    lookup()
                return created
            created = self.run(
                f"INSERT INTO jobs (id, account_id, code, title, status, origin, data, import_id, created_at, updated_at) "
                f"SELECT {self.newid}, :acct, {values}"
            ).rowcount
            if created:
                self.run(
                    f"{AUDIT_INSERT}"
                    f"SELECT :acct, :now, :actor, 'import.create', 'jobs', j.id, :imp, NULL, {after} FROM jobs j "
                    "WHERE j.account_id = :acct AND j.import_id = :imp AND j.created_at = :now "
                    f"AND j.code IN (SELECT job_code FROM {S} WHERE {need})"
                )
                lookup()
        else:
            self.run(
                f"UPDATE {S} SET err = 'unknown job code ' || job_code || ' (create_missing_jobs is off)', err_col = 'job_code' "
                f"WHERE {need}"
            )
        return created

    def _resolve_applications(self) -> None:
        S = self.stage
        self.probe(
            "ref_id",
            "SELECT a.id FROM applications a WHERE a.account_id = :acct "
            f"AND {self.key_eq('a.external_id', 's.application_external_id')} "
            "AND a.deleted_at IS NULL ORDER BY a.created_at, a.id LIMIT 1",
            "s.ref_id IS NULL AND s.application_external_id IS NOT NULL",
        )
        self.run(
            f"UPDATE {S} SET err = 'no application with external id ' || application_external_id, "
            "err_col = 'application_external_id' WHERE ref_id IS NULL AND application_external_id IS NOT NULL AND err IS NULL"
        )

    def _resolve_candidates(self, r: int) -> int:
        S = self.stage

        def lookup() -> None:
            self.probe(
                "candidate_id",
                "SELECT u.id FROM users u WHERE u.account_id = :acct AND u.email_normalized = s.email_norm",
                "s.rnd = :r AND s.candidate_id IS NULL AND s.outcome IN ('created', 'updated')",
                r=r,
            )

        lookup()
        if self.pg:
            # one statement: the first row per new email creates the user (DISTINCT ON keeps the
            # lowest row number), its audit row comes from RETURNING, and the round's rows get its id
            after = self.obj(
                [
                    ("email", "u.email"),
                    ("first_name", "u.first_name"),
                    ("last_name", "u.last_name"),
                    ("phone", "u.phone"),
                ]
            )
            need = "rnd = :r AND candidate_id IS NULL AND outcome IN ('created', 'updated')"
            return self.run(
                "WITH u AS (INSERT INTO users (id, account_id, role, email, email_normalized, first_name, last_name, phone, "
                "external_id, data, import_id, created_at, updated_at) "
                f"SELECT DISTINCT ON (email_norm) {self.rowid('user', S)}, :acct, 'candidate', email, email_norm, first_name, "
                f"last_name, phone, candidate_external_id, '{{}}', :imp, :now, :now FROM {S} WHERE {need} ORDER BY email_norm, row_no "
                "RETURNING id, email, email_normalized, first_name, last_name, phone), "
                f"a AS ({AUDIT_INSERT}"
                f"SELECT :acct, :now, :actor, 'import.create', 'candidates', u.id, :imp, NULL, {after} FROM u), "
                # the id is derived from the first row's number: no join with the inserted rows
                f"st AS (UPDATE {S} SET candidate_id = ('{self.prefix['user']}' || lpad(to_hex(d.first_row), 8, '0'))::uuid "
                f"FROM (SELECT row_no, min(row_no) OVER (PARTITION BY email_norm) AS first_row FROM {S} WHERE {need}) d "
                f"WHERE {S}.row_no = d.row_no) "
                "SELECT count(*) FROM u",
                r=r,
            ).scalar()
        self.run(
            f"UPDATE {S} SET cand_new = 1 WHERE row_no IN (SELECT min(row_no) FROM {S} WHERE rnd = :r "
            "AND candidate_id IS NULL AND outcome IN ('created', 'updated') GROUP BY email_norm)",
            r=r,
        )
        n = self.run(
            "INSERT INTO users (id, account_id, role, email, email_normalized, first_name, last_name, phone, external_id, "
            "data, import_id, created_at, updated_at) "
            f"SELECT {self.rowid('user', S)}, :acct, 'candidate', email, email_norm, first_name, last_name, phone, candidate_external_id, "
            f"'{{}}', :imp, :now, :now FROM {S} WHERE rnd = :r AND cand_new = 1",
            r=r,
        ).rowcount
        if n:
            lookup()
            after = self.obj(
                [
                    ("email", "u.email"),
                    ("first_name", "u.first_name"),
                    ("last_name", "u.last_name"),
                    ("phone", "u.phone"),
                ]
            )
            self.run(
                f"{AUDIT_INSERT}"
                f"SELECT :acct, :now, :actor, 'import.create', 'candidates', u.id, :imp, NULL, {after} "
                f"FROM {S} JOIN users u ON u.id = {S}.candidate_id WHERE {S}.rnd = :r AND {S}.cand_new = 1",
                r=r,
            )
        return n

    # -- duplicates

    def _match(self, r: int) -> bool:
        """Find each round-r row's existing record; returns whether rows were pushed to a later round."""
        S, e = self.stage, self.entity
        table = ENTITY_TABLES[e].name
        base = "s.rnd = :r AND s.err IS NULL AND s.match_id IS NULL"
        if "external_id" in self.duplicate_keys or e == "contracts":
            # the oldest live record with the external id (the key is not unique in the store)
            self.probe(
                "match_id",
                f"SELECT t.id FROM {table} t WHERE t.account_id = :acct "
                f"AND {self.key_eq('t.external_id', 's.external_id')} "
                "AND t.deleted_at IS NULL ORDER BY t.created_at, t.id LIMIT 1",
                f"{base} AND s.external_id IS NOT NULL",
                r=r,
            )
        if e == "applications" and "email" in self.duplicate_keys:
            self.probe(
                "match_id",
                "SELECT a.id FROM users u JOIN applications a ON a.candidate_id = u.id "
                "WHERE u.account_id = :acct AND u.email_normalized = s.email_norm AND a.account_id = :acct AND a.deleted_at IS NULL "
                "AND (a.job_id = s.job_id OR (a.job_id IS NULL AND s.job_id IS NULL)) ORDER BY a.created_at, a.id LIMIT 1",
                base,
                r=r,
            )
        unique_key = {"candidates": ("email_normalized", "email_norm"), "jobs": ("code", "code")}.get(e)
        # SQL: the record `alias` has the row's key (emails are stored normalised; job codes fold)
        same_key = {
            "candidates": lambda alias, row: f"{alias}.email_normalized = {row}.email_norm",
            "jobs": lambda alias, row: self.key_eq(f"{alias}.code", f"{row}.code"),
        }.get(e)
        if unique_key:
            # the unique key matches whatever duplicate_keys say: the store allows one record per key
            # (the oldest, where codes differing only in case were stored before keys were folded)
            self.probe(
                "match_id",
                f"SELECT t.id FROM {table} t WHERE t.account_id = :acct AND {same_key('t', 's')} "
                "ORDER BY t.created_at, t.id LIMIT 1",
                base,
                r=r,
            )
        dup = DUPLICATE_OUTCOME[self.on_duplicate]
        if unique_key and dup == "created":
            self.run(
                f"UPDATE {S} SET err = '{e} are unique by {unique_key[1].replace('_norm', '')}: a match cannot be created again', "
                f"err_col = '{unique_key[1].replace('_norm', '')}' WHERE rnd = :r AND err IS NULL AND match_id IS NOT NULL",
                r=r,
            )
        # two rows of a round matching one record by different keys: the later one waits a round
        bumped = self.run(
            f"UPDATE {S} SET rnd = rnd + 1, match_id = NULL FROM (SELECT row_no, row_number() OVER "
            f"(PARTITION BY match_id ORDER BY row_no) AS n FROM {S} WHERE rnd = :r AND err IS NULL AND match_id IS NOT NULL) d "
            f"WHERE {S}.row_no = d.row_no AND d.n > 1",
            r=r,
        ).rowcount
        self.run(
            f"UPDATE {S} SET outcome = CASE WHEN match_id IS NULL THEN 'created' ELSE '{dup}' END WHERE rnd = :r AND err IS NULL",
            r=r,
        )
        if unique_key and dup == "updated":
            staged = unique_key[1]
            # an external-id match whose new key belongs to another record would break uniqueness
            self.run(
                f"UPDATE {S} SET err = 'another {e[:-1]} already has this {staged.replace('_norm', '')}', "
                f"err_col = '{staged.replace('_norm', '')}', outcome = NULL WHERE rnd = :r AND outcome = 'updated' AND "
                # a scalar subquery, not EXISTS: the planner would turn EXISTS into a join (see probe)
                f"(SELECT t.id FROM {table} t WHERE t.account_id = :acct AND {same_key('t', S)} "
                f"AND t.id <> {S}.match_id LIMIT 1) IS NOT NULL "
                # a record that has the key already keeps it: nothing new to clash
                f"AND NOT coalesce((SELECT {same_key('m', S)} FROM {table} m WHERE m.id = {S}.match_id), false)",
                r=r,
            )
        return bool(bumped)

    # -- writes

    def _spec(self) -> dict[str, Any]:
        """Per entity: insert columns -> staged expressions, update assignments, audit fields."""
        d = self.default_stage.replace("'", "''")
        if self.entity == "applications":
            return {
                "insert": {
                    "candidate_id": "s.candidate_id",
                    "job_id": "s.job_id",
                    "stage": f"coalesce(s.stage, '{d}')",
                    "status": "coalesce(s.status, 'active')",
                    "source": "s.source",
                    "applied_at": "s.applied_at",
                    "external_id": "s.external_id",
                    "data": self.json_of("data"),
                },
                "update": {
                    "candidate_id": "s.candidate_id",
                    "job_id": "coalesce(s.job_id, t.job_id)",
                    "stage": "coalesce(s.stage, t.stage)",
                    "status": "coalesce(s.status, t.status)",
                    "source": "coalesce(s.source, t.source)",
                    "applied_at": "coalesce(s.applied_at, t.applied_at)",
                    "external_id": "coalesce(t.external_id, s.external_id)",
                    "data": self.merge("t.data", self.json_of("data")),
                },
                "audit": ("candidate_id", "job_id", "stage", "status", "source", "applied_at", "external_id"),
            }
        if self.entity == "candidates":
            return {
                "insert": {
                    "role": "'candidate'",
                    "email": "s.email",
                    "email_normalized": "s.email_norm",
                    "first_name": "s.first_name",
                    "last_name": "s.last_name",
                    "phone": "s.phone",
                    "external_id": "s.external_id",
                    "data": self.json_of("data"),
                },
                "update": {
                    "email": "s.email",
                    "email_normalized": "s.email_norm",
                    "first_name": "coalesce(s.first_name, t.first_name)",
                    "last_name": "coalesce(s.last_name, t.last_name)",
                    "phone": "coalesce(s.phone, t.phone)",
                    "external_id": "coalesce(t.external_id, s.external_id)",
                    "data": self.merge("t.data", self.json_of("data")),
                },
                "audit": ("email", "email_normalized", "first_name", "last_name", "phone", "external_id"),
            }
        if self.entity == "jobs":
            return {
                "insert": {
                    "code": "s.code",
                    "title": "coalesce(s.title, s.code)",
                    "description": "s.description",
                    "location": "s.location",
                    "status": "coalesce(s.status, 'open')",
                    "origin": "'uploaded'",
                    "source_url": "s.source_url",
                    "external_id": "s.external_id",
                    "data": self.json_of("data"),
                },
                "update": {
                    "code": self.kept_key("t.code", "s.code"),
                    "title": "coalesce(s.title, t.title)",
                    "description": "coalesce(s.description, t.description)",
                    "location": "coalesce(s.location, t.location)",
                    "status": "coalesce(s.status, t.status)",
                    "source_url": "coalesce(s.source_url, t.source_url)",
                    "external_id": "coalesce(t.external_id, s.external_id)",
                    "data": self.merge("t.data", self.json_of("data")),
                },
                "audit": ("code", "title", "description", "location", "status", "source_url", "external_id"),
            }
        return {
            "insert": {
                "application_id": "s.ref_id",
                "status": "coalesce(s.status, 'draft')",
                "template": "s.template",
                "terms": self.json_of("terms"),
                "external_id": "s.external_id",
                "data": self.json_of("data"),
            },
            "update": {
                "application_id": "coalesce(s.ref_id, t.application_id)",
                "status": "coalesce(s.status, t.status)",
                "template": "coalesce(s.template, t.template)",
                "terms": self.merge("t.terms", self.json_of("terms")),
                "data": self.merge("t.data", self.json_of("data")),
            },
            "audit": ("application_id", "status", "template", "external_id"),
        }

    def _audit_obj(self, alias: str, fields: tuple[str, ...], json_fields: tuple[str, ...]) -> str:
        return self.obj([(f, f"{alias}.{f}") for f in fields] + [(f, self.js(f"{alias}.{f}")) for f in json_fields])

    def _create(self, r: int) -> None:
        S, spec = self.stage, self._spec()
        table, ins = ENTITY_TABLES[self.entity].name, spec["insert"]
        cols = ", ".join(ins)
        exprs = ", ".join(ins.values())
        json_fields = ("data", "terms") if table == "contracts" else ("data",)
        audit = AUDIT_INSERT
        if self.pg:
            # the audit rows come from the inserted rows (RETURNING), not from re-joining the table
            after = self._audit_obj("t", spec["audit"], json_fields)
            self.run(
                f"WITH t AS (INSERT INTO {table} (id, account_id, {cols}, import_id, created_at, updated_at) "
                f"SELECT s.new_id, :acct, {exprs}, :imp, :now, :now FROM {self.stage} s WHERE s.rnd = :r AND s.outcome = 'created' "
                f"RETURNING id, {', '.join(spec['audit'])}, {', '.join(json_fields)}) "
                f"{audit}SELECT :acct, :now, :actor, 'import.create', '{self.entity}', t.id, :imp, NULL, {after} FROM t",
                r=r,
            )
            if self.entity == "applications":
                after = self.obj(
                    [("application_id", "f.application_id"), ("form_name", "f.form_name"), ("answers", "f.answers")]
                )
                self.run(
                    "WITH f AS (INSERT INTO form_submissions (id, account_id, application_id, form_name, answers, submitted_at, import_id, "
                    f"created_at, updated_at) SELECT {self.rowid('form')}, :acct, s.new_id, :form, {self.json_of('answers')}, s.applied_at, "
                    f":imp, :now, :now FROM {self.stage} s WHERE s.rnd = :r AND s.outcome = 'created' "
                    "RETURNING id, application_id, form_name, answers) "
                    f"{audit}SELECT :acct, :now, :actor, 'import.create', 'form_submissions', f.id, :imp, NULL, {after} FROM f",
                    r=r,
                )
            return
        n = self.run(
            f"INSERT INTO {table} (id, account_id, {cols}, import_id, created_at, updated_at) "
            f"SELECT s.new_id, :acct, {exprs}, :imp, :now, :now FROM {S} s WHERE s.rnd = :r AND s.outcome = 'created'",
            r=r,
        ).rowcount
        if not n:
            return
        after = self._audit_obj("t", spec["audit"], json_fields)
        self.run(
            f"{AUDIT_INSERT}"
            f"SELECT :acct, :now, :actor, 'import.create', '{self.entity}', t.id, :imp, NULL, {after} "
            f"FROM {S} s JOIN {table} t ON t.id = s.new_id WHERE s.rnd = :r AND s.outcome = 'created'",
            r=r,
        )
        if self.entity == "applications":
            self.run(
                "INSERT INTO form_submissions (id, account_id, application_id, form_name, answers, submitted_at, import_id, created_at, updated_at) "
                f"SELECT {self.newid}, :acct, s.new_id, :form, {self.json_of('answers')}, s.applied_at, :imp, :now, :now "
                f"FROM {S} s WHERE s.rnd = :r AND s.outcome = 'created'",
                r=r,
            )
            after = self.obj(
                [
                    ("application_id", "f.application_id"),
                    ("form_name", "f.form_name"),
                    ("answers", self.js("f.answers")),
                ]
            )
            self.run(
                f"{AUDIT_INSERT}"
                f"SELECT :acct, :now, :actor, 'import.create', 'form_submissions', f.id, :imp, NULL, {after} "
                f"FROM {S} s JOIN form_submissions f ON f.application_id = s.new_id WHERE s.rnd = :r AND s.outcome = 'created'",
                r=r,
            )

    def _update(self, r: int) -> None:
        S, spec = self.stage, self._spec()
        table, upd = ENTITY_TABLES[self.entity].name, spec["update"]
        json_fields = tuple(c for c in ("data", "terms") if c in upd)
        plain = tuple(c for c in spec["audit"] if c in upd)
        before = self._audit_obj("t", plain, json_fields)
        after = self.obj([(c, upd[c]) for c in plain] + [(c, upd[c]) for c in json_fields])
        # a row that would change no value is unchanged: no audit row, no UPDATE
        same = same_as_stored(self.pg, ENTITY_TABLES[self.entity], upd)
        matched = f"FROM {S} s JOIN {table} t ON t.id = s.match_id WHERE s.rnd = :r AND s.outcome = 'updated'"
        # before-image first: rollback restores it
        if self.pg:
            # one pass over the matched records compares, marks the unchanged rows and audits the others
            n = self.run(
                f"WITH c AS MATERIALIZED (SELECT s.row_no, t.id, {same} AS same, {before} AS before, {after} AS after "
                f"{matched}), "
                f"m AS (UPDATE {S} SET outcome = 'unchanged' WHERE row_no IN (SELECT row_no FROM c WHERE same)) "
                f"{AUDIT_INSERT}SELECT :acct, :now, :actor, 'import.update', '{self.entity}', c.id, :imp, c.before, "
                "c.after FROM c WHERE NOT c.same",
                r=r,
            ).rowcount
        else:
            self.run(
                f"UPDATE {S} SET outcome = 'unchanged' WHERE row_no IN (SELECT s.row_no {matched} AND {same})", r=r
            )
            n = self.run(
                f"{AUDIT_INSERT}SELECT :acct, :now, :actor, 'import.update', '{self.entity}', t.id, :imp, {before}, "
                f"{after} {matched}",
                r=r,
            ).rowcount
        if not n:
            return
        sets = ", ".join(f"{c} = {e}" for c, e in upd.items())
        self.run(
            f"UPDATE {table} AS t SET {sets}, updated_at = :now FROM {S} s "
            "WHERE s.rnd = :r AND s.outcome = 'updated' AND t.id = s.match_id",
            r=r,
        )

    def _flag(self, r: int) -> None:
        S = self.stage
        fields = [c for c in self.columns if not c.startswith("x_") and c not in TIMESTAMP_COLUMNS]
        data = self.obj_nonnull([(c, f"s.{c}") for c in fields])
        self.run(
            "INSERT INTO import_flags (id, account_id, import_id, row_number, entity_type, entity_id, reason, data, created_at) "
            f"SELECT s.new_id, :acct, :imp, s.row_no, '{self.entity}', s.match_id, 'duplicate', {data}, :now "
            f"FROM {S} s WHERE s.rnd = :r AND s.outcome = 'flagged'",
            r=r,
        )


# -- rollback: an import is a change set; `connectors.store.changes.rollback` undoes it


def finish_run_imports(store: Any, run_id: str, status: str, error: str) -> int:
    """End the unfinished history rows a Dagster run left (pending or processing) as STATUS with ERROR.

    A run that died, gave up after its retries or was cancelled before its import could record
    it never leaves a row `processing`; a later run of the file still resumes after its
    committed batches. Returns the number of rows ended.
    """
    from connectors.store.schema import import_history as h

    with store.begin() as conn:
        return conn.execute(
            h.update()
            .where(h.c.dagster_run_id == run_id, h.c.status.in_(["pending", "processing"]))
            .values(status=status, finished_at=datetime.now(UTC), error_message=error[:1900])
        ).rowcount
