"""ImportWriter: one import's batches, staged and written set-based on one connection.

Each batch: load it into the staging table (applications with the jobs their codes have, found
before the load), resolve references (jobs by code, candidates by normalised email,
applications by external id), match duplicates, then per duplicate round insert new records,
update matched ones, queue flagged rows, and report counts. The caller wraps a batch in one
transaction together with the import's counters, so a batch is all or nothing.
"""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa

from connectors.store.dialect import ACCOUNT_WRITES, dialect_of, inline
from connectors.store.importing import match, resolve, write
from connectors.store.importing.audit import STAMP
from connectors.store.importing.errors import WriteFailed, db_reason
from connectors.store.importing.keys import Keys
from connectors.store.importing.staging import STAGE_KEYS, STATE_COLUMNS, staging_table
from connectors.store.importing.statistics import LookupStatistics
from connectors.store.schema import ENTITY_TABLES

# a matched row whose values equal its record's is `unchanged` in the staging table, reported
# as skipped with details["unchanged"]
OUTCOMES = ("created", "updated", "skipped", "flagged")
# the statistics target of the staging table's ANALYZE (PostgreSQL samples 300 rows per unit)
STAGE_STATISTICS = 10
# held by each import batch and each rollback until it commits, per account (PostgreSQL)


@dataclass
class BatchOutcome:
    counts: dict[str, int]
    errors: list[tuple[int, str, str]]  # (row_no, column, reason) found by the database
    details: dict[str, int] = field(default_factory=dict)


def id_prefix() -> str:
    """The first 24 hex digits of time-ordered ids (UUIDv7 layout: ms timestamp, version 7,
    variant, random bits); ids are prefix + the row number as 8 hex digits, so one import's
    ids ascend in file order and index inserts append instead of landing on random pages."""
    ms = time.time_ns() // 1_000_000
    r = int.from_bytes(os.urandom(6), "big")
    hexed = f"{ms & ((1 << 48) - 1):012x}7{(r >> 36) & 0xFFF:03x}{0x8 | ((r >> 34) & 0x3):x}{(r >> 22) & 0xFFF:03x}{(r >> 6) & 0xFFFF:04x}"
    return f"{hexed[:8]}-{hexed[8:12]}-{hexed[12:16]}-{hexed[16:20]}-{hexed[20:24]}"


class ImportWriter:
    """Set-based import of staged batches for one entity, on one connection.

    Match keys (job codes, external ids, the application external ids of contracts) ignore case
    and surrounding whitespace unless `case_sensitive_keys` (see `keys.Keys`). Where an account
    holds keys that differ only in case (written before keys were folded), the oldest record matches.
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
        kind: str = "import",
        clear: tuple[str, ...] = (),
        shard: bool = False,
    ) -> None:
        self.conn = conn
        # one shard of a sharded import: its batches share the account's lock with the other
        # shards (their rows never touch the same candidate) and take turns creating jobs
        self.shard = shard
        # columns whose empty staged value clears the record's value on update (a sync taking the
        # source's values); elsewhere an empty value keeps the record's
        self.clear = frozenset(clear)
        # the change set kind writing: "import", or "sync" (a sync run; IMPORT_ID is then its id)
        self.kind = kind
        self.stamp = STAMP
        self.dialect = dialect_of(conn)
        self.entity = entity
        self.table = ENTITY_TABLES[entity]
        self.account_id = account_id
        self.columns = columns  # staged data columns after row_no, rnd
        self.json_spec = json_spec
        self.on_duplicate = on_duplicate
        self.duplicate_keys = duplicate_keys
        self.create_missing_jobs = create_missing_jobs
        self.keys = Keys(self.dialect, case_sensitive_keys)
        # ids of created records (application/candidate/job..., user, form submission)
        self.prefix = {"rec": id_prefix(), "user": id_prefix(), "form": id_prefix()}
        self.stage = staging_table(f"import_stage_{uuid.uuid4().hex[:12]}", columns, self.dialect, self.prefix["rec"])
        self.params: dict[str, Any] = {
            "acct": account_id,
            "imp": import_id,
            "actor": actor,
            "form": form_name,
            "default_stage": default_stage,
        }
        self.statistics = LookupStatistics(self.dialect, entity)
        # what write_batch is doing, for the message of a WriteFailed
        self.step = ""
        # the batch's job codes -> the id of their job when it was staged (None: no job had the code)
        self.staged_jobs: dict[str, str | None] = {}

    def run(self, statement: sa.Executable, **extra: Any) -> sa.CursorResult:
        """Execute STATEMENT with the import's parameters (and EXTRA ones); its rowcount is kept."""
        return self.conn.execute(statement.execution_options(preserve_rowcount=True), {**self.params, **extra})

    def json_of(self, kind: str) -> sa.ColumnElement:
        """SQL: the staged JSON object of `kind` (one text column, built by validation.json_objects)."""
        column = self.json_spec.get(kind)
        return self.dialect.json_parse(self.stage.c[column]) if column else self.dialect.empty_json()

    # -- staging

    def create_stage(self) -> None:
        try:
            self.dialect.create_temp_table(self.conn, self.stage)
        except sa.exc.DBAPIError as exc:
            what = f"creating the staging table of {len(self.columns)} columns"
            raise WriteFailed(f"{what} failed: {db_reason(exc)}") from exc

    def drop_stage(self) -> None:
        self.dialect.drop_temp_table(self.conn, self.stage)

    def load(self, table: pa.Table) -> None:
        names = ["row_no", "rnd", *self.columns]
        batch = table.select(names)
        if self.entity == "applications":
            batch = resolve.with_job_ids(self, batch)
        self.dialect.empty_temp_table(self.conn, self.stage)
        self.dialect.bulk_load(self.conn, self.stage, batch)
        # the planner needs the join keys' statistics, not those of every text column, and a
        # sample of 3,000 rows tells it as much about a batch as all of them (the default target,
        # 100, reads 30,000 rows: the whole batch)
        keys = [c for c in ("rnd", *STAGE_KEYS) if c in names]
        with self.dialect.setting(self.conn, "default_statistics_target", str(STAGE_STATISTICS)):
            self.dialect.analyze(self.conn, self.stage, ["row_no", *keys, *STATE_COLUMNS])

    # -- planner statistics

    def refresh_statistics(self) -> list[str]:
        """ANALYZE the lookup tables whose statistics no longer describe this account's rows (`LookupStatistics`)."""
        try:
            return self.statistics.refresh(self.conn, self.params)
        except sa.exc.DBAPIError as exc:
            raise WriteFailed(
                f"refreshing the planner statistics of {', '.join(self.statistics.tables)} failed: {db_reason(exc)}"
            ) from exc

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
            raise WriteFailed(f"{rows} were not written: {self.step} failed: {db_reason(exc)}") from exc

    def _write_batch(self, table: pa.Table) -> BatchOutcome:
        e, s = self.entity, self.stage.c
        # a batch commits together with its counters, so a commit lost in a server crash is
        # simply redone by the resume; JIT compilation costs more than it saves here
        self.dialect.set_local(self.conn, synchronous_commit="off", jit="off", work_mem="64MB")
        self.load(table)
        # one batch at a time per account: a concurrent import's batch (the queue runs two)
        # would not see this one's uncommitted records, create the same job or candidate
        # again and fail on the unique key, or duplicate an application that has none. The
        # lock waits for the other batch's commit; the statements below then see its rows.
        self.step = "waiting for the account's other imports"
        # The shards of one import hold it shared: they write together.
        self.dialect.lock(self.conn, ACCOUNT_WRITES, str(self.account_id), shared=self.shard)
        self.params["now"] = datetime.now(UTC)
        details: dict[str, int] = {}
        if e == "applications":
            self.step = "finding or creating their jobs"
            details["jobs_created"] = self._resolve_jobs()
        if e == "contracts":
            self.step = "finding their applications"
            self._resolve_applications()
        rounds = self.run(sa.select(sa.func.max(s.rnd))).scalar() or 0
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
                self.statistics.analyze_new_account(self.conn)
            r += 1
        self.step = "counting the outcomes"
        counts = dict.fromkeys(OUTCOMES, 0)
        for outcome, n in self.run(sa.select(s.outcome, sa.func.count()).where(s.err.is_(None)).group_by(s.outcome)):
            counts[outcome] = n
        # rows equal to their record were written as nothing: skipped, and counted apart
        details["unchanged"] = counts.pop("unchanged", 0)
        counts["skipped"] += details["unchanged"]
        self.statistics.grew(self.table.name, counts["created"])
        self.statistics.grew("users", details.get("candidates_created", 0))
        self.statistics.grew("jobs", details.get("jobs_created", 0))
        failed = sa.select(s.row_no, s.err_col, s.err).where(s.err.is_not(None)).order_by(s.row_no)
        errors = [(int(row_no), col, err) for row_no, col, err in self.run(failed)]
        return BatchOutcome(counts=counts, errors=errors, details=details)

    def sample(self, limit: int = 20) -> list[dict]:
        """The staged rows with their outcome (dry run preview)."""
        s = self.stage.c
        shown = [s[c] for c in self.columns if not c.startswith("x_")]
        outcome = sa.func.coalesce(s.outcome, inline("error")).label("outcome")
        rows = self.run(sa.select(s.row_no, outcome, s.err, *shown).order_by(s.row_no).limit(int(limit)))
        return [{k: (str(v) if isinstance(v, datetime) else v) for k, v in row._mapping.items()} for row in rows]

    # -- the steps of a round (methods: one place to observe or wrap each)

    def _resolve_jobs(self) -> int:
        return resolve.resolve_jobs(self)

    def _resolve_applications(self) -> None:
        resolve.resolve_applications(self)

    def _resolve_candidates(self, r: int) -> int:
        return resolve.resolve_candidates(self, r)

    def _match(self, r: int) -> bool:
        return match.match_duplicates(self, r)

    def _create(self, r: int) -> int:
        return write.create(self, r)

    def _update(self, r: int) -> int:
        return write.update(self, r)

    def _flag(self, r: int) -> None:
        write.flag(self, r)
