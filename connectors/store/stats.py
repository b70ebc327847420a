"""Statistics of bulk operations, set-based from the change sets (docs/operations.md, "Statistics").

Every import, bulk job, sync run, document import and rollback is a change set; `operations()`
is one SELECT (a UNION ALL over the capability tables, whose rows share their change set's id
and account, and the change sets no capability table backs) giving each of them the same columns: operation kind, account, status class, start, end, duration, records
processed and failed. `operation_stats` aggregates it in SQL (counts, success rate, mean and p95
duration, records per day) per operation kind and account, per kind, per account and overall.
No record passes through Python; the p95 is a window function (nearest rank), so it runs on
SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles

from connectors.store import schema
from connectors.store.dialect import dialect_of

IN_PROGRESS, SUCCEEDED, FAILED, CANCELLED, WAITING = "in_progress", "succeeded", "failed", "cancelled", "waiting"
# the raw statuses of every capability, by class
STATUS_CLASSES = {
    IN_PROGRESS: ("pending", "processing", "running", "queued"),
    SUCCEEDED: ("completed", "succeeded", "skipped", "rolled_back"),
    FAILED: ("failed",),
    CANCELLED: ("cancelled", "canceled"),
}
# the groupings `operation_stats` reports: a name and the columns it groups by
GROUPINGS = {
    "by_operation_and_account": ("operation", "account"),
    "by_operation": ("operation",),
    "by_account": ("account",),
    "total": (),
}
P95 = 95
SORT_MEMORY = "64MB"


class _Seconds(sa.sql.functions.FunctionElement):
    """Seconds from the first timestamp argument to the second, as a float."""

    type = sa.Float()
    inherit_cache = True


@compiles(_Seconds, "postgresql")
def _seconds_pg(element: _Seconds, compiler: Any, **kw: Any) -> str:
    start, end = (compiler.process(c, **kw) for c in element.clauses)
    return f"EXTRACT(EPOCH FROM ({end} - {start}))::float8"


@compiles(_Seconds)
def _seconds_plain(element: _Seconds, compiler: Any, **kw: Any) -> str:
    start, end = (compiler.process(c, **kw) for c in element.clauses)
    return f"((julianday({end}) - julianday({start})) * 86400.0)"


def seconds_between(start: sa.ColumnElement, end: sa.ColumnElement) -> sa.ColumnElement[float]:
    """SQL: the seconds from START to END (NULL when either is NULL)."""
    return _Seconds(start, end)


class _JsonCount(sa.sql.functions.FunctionElement):
    """A count kept under a key of a JSON object: the number there, or the sum of the numbers of
    the object there (a rollback keeps `{"deleted": {"candidates": 3, ...}}`); NULL otherwise."""

    type = sa.Integer()
    inherit_cache = True


@compiles(_JsonCount, "postgresql")
def _json_count_pg(element: _JsonCount, compiler: Any, **kw: Any) -> str:
    doc, key = (compiler.process(c, **kw) for c in element.clauses)
    value = f"(({doc})::jsonb -> {key})"
    return (
        f"(CASE jsonb_typeof({value}) WHEN 'number' THEN ({value} #>> '{{}}')::numeric::bigint "
        f"WHEN 'object' THEN (SELECT sum((e.value #>> '{{}}')::numeric)::bigint FROM jsonb_each({value}) AS e "
        "WHERE jsonb_typeof(e.value) = 'number') END)"
    )


@compiles(_JsonCount)
def _json_count_plain(element: _JsonCount, compiler: Any, **kw: Any) -> str:
    doc, key = (compiler.process(c, **kw) for c in element.clauses)
    path = f"('$.' || {key})"
    return (
        f"(CASE json_type({doc}, {path}) WHEN 'integer' THEN json_extract({doc}, {path}) "
        f"WHEN 'real' THEN CAST(json_extract({doc}, {path}) AS INTEGER) "
        f"WHEN 'object' THEN (SELECT CAST(sum(e.value) AS INTEGER) FROM json_each({doc}, {path}) AS e "
        "WHERE e.type IN ('integer', 'real')) END)"
    )


def json_count(counts: sa.ColumnElement, key: str) -> sa.ColumnElement[int]:
    """SQL: the count under KEY of the JSON object COUNTS (see _JsonCount)."""
    return _JsonCount(counts, sa.literal(key, sa.String()))


def _count(counts: sa.ColumnElement, key: str) -> sa.ColumnElement[int]:
    return sa.func.coalesce(json_count(counts, key), 0)


def operations() -> sa.Subquery:
    """Every change set as one row: id, account_id, kind, operation, raw_status, dagster_run_id,
    started_at, finished_at, records (processed), failed_records."""
    cs = schema.change_sets
    h, b, s = schema.import_history, schema.bulk_jobs, schema.sync_runs
    # a backed change set's row shares its id and account: no join with change_sets needed
    imports = sa.select(
        h.c.id,
        h.c.account_id,
        sa.literal("import", sa.String()).label("kind"),
        sa.literal("import", sa.String()).label("operation"),
        h.c.status.label("raw_status"),
        h.c.dagster_run_id,
        h.c.started_at,
        h.c.finished_at,
        (h.c.created + h.c.updated + h.c.skipped + h.c.errors).label("records"),
        h.c.errors.label("failed_records"),
    )
    # a preview that waits for its confirm is neither running nor done
    waiting = (b.c.mode == "preview") & (b.c.confirmed_at.is_(None)) & (b.c.status == "pending")
    bulk_jobs = sa.select(
        b.c.id,
        b.c.account_id,
        sa.literal("bulk_job", sa.String()).label("kind"),
        (sa.literal("bulk_job.", sa.String()) + b.c.operation).label("operation"),
        sa.case((waiting, sa.literal(WAITING)), else_=b.c.status).label("raw_status"),
        b.c.dagster_run_id,
        sa.func.coalesce(b.c.started_at, b.c.created_at).label("started_at"),
        # a bulk job that never started (a preview that expired, a pending one cancelled) has no duration
        sa.case((b.c.started_at.is_(None), sa.null()), else_=b.c.finished_at).label("finished_at"),
        b.c.processed_count.label("records"),
        b.c.failed_count.label("failed_records"),
    )
    syncs = sa.select(
        s.c.id,
        s.c.account_id,
        sa.literal("sync", sa.String()).label("kind"),
        sa.literal("sync", sa.String()).label("operation"),
        s.c.status.label("raw_status"),
        s.c.dagster_run_id,
        s.c.started_at,
        s.c.finished_at,
        s.c.records_read.label("records"),
        s.c.errors.label("failed_records"),
    )
    # a change set nothing backs keeps its status and counts itself (document imports, rollbacks)
    counts = cs.c.counts
    unbacked_records = sa.func.coalesce(
        json_count(counts, "records"),
        json_count(counts, "processed"),
        _count(counts, "restored") + _count(counts, "deleted") + _count(counts, "closed"),
    )
    unbacked = sa.select(
        cs.c.id,
        cs.c.account_id,
        cs.c.kind,
        cs.c.kind.label("operation"),
        sa.func.coalesce(cs.c.status, "processing").label("raw_status"),
        cs.c.dagster_run_id,
        cs.c.opened_at.label("started_at"),
        cs.c.finished_at,
        unbacked_records.label("records"),
        sa.func.coalesce(json_count(counts, "failed"), json_count(counts, "errors"), 0).label("failed_records"),
    ).where(cs.c.kind.not_in(list(schema.BACKED_KINDS)))
    return sa.union_all(imports, bulk_jobs, syncs, unbacked).subquery("operations")


def status_class(raw: sa.ColumnElement) -> sa.ColumnElement[str]:
    """SQL: the class (in_progress, succeeded, failed, cancelled, waiting) of a raw status."""
    whens = [(raw.in_(values), sa.literal(name)) for name, values in STATUS_CLASSES.items()]
    return sa.case(*whens, else_=raw)


@dataclass(frozen=True)
class Stats:
    """Numbers of one window, in each grouping of GROUPINGS (lists of dicts, `total` one dict)."""

    since: datetime
    until: datetime
    account: str | None
    groups: dict[str, Any]

    @property
    def window_days(self) -> float:
        return (self.until - self.since).total_seconds() / 86400

    def as_dict(self) -> dict[str, Any]:
        return {
            "since": self.since.isoformat(),
            "until": self.until.isoformat(),
            "window_days": round(self.window_days, 4),
            "account": self.account,
            **self.groups,
        }


def _aggregate(base: sa.CTE, name: str, keys: tuple[str, ...]) -> sa.Select:
    """One grouping of BASE: its keys (NULL for the others), its name, and the numbers."""
    group = [base.c[k] for k in keys]
    finished = base.c.cls.in_([SUCCEEDED, FAILED, CANCELLED]) & base.c.in_window
    dur = sa.case((finished, base.c.duration))
    # nearest-rank p95 over the finished rows of each group: rank the durations (NULLs last) and
    # count them, then take the smallest duration whose rank reaches 95% of the count
    ranked = sa.select(
        *group,
        base.c.cls,
        base.c.in_window,
        base.c.records,
        base.c.failed_records,
        dur.label("dur"),
        sa.func.row_number()
        .over(partition_by=group or None, order_by=[sa.case((dur.is_(None), 1), else_=0), dur])
        .label("rn"),
        sa.func.count(dur).over(partition_by=group or None).label("n"),
    ).subquery(f"ranked_{name}")
    r = ranked.c

    def count(cls: str, *, windowed: bool = True) -> sa.ColumnElement[int]:
        return sa.func.sum(sa.case(((r.cls == cls) & r.in_window if windowed else r.cls == cls, 1), else_=0))

    q = sa.select(
        sa.literal(name).label("grouping"),
        *(r[k] if k in keys else sa.null().label(k) for k in ("operation", "account")),
        count(IN_PROGRESS, windowed=False).label(IN_PROGRESS),
        count(WAITING, windowed=False).label(WAITING),
        count(SUCCEEDED).label(SUCCEEDED),
        count(FAILED).label(FAILED),
        count(CANCELLED).label(CANCELLED),
        sa.func.avg(r.dur).label("mean_seconds"),
        sa.func.min(sa.case((r.dur.is_not(None) & (r.rn * 100 >= P95 * r.n), r.dur))).label("p95_seconds"),
        sa.func.sum(sa.case((r.in_window, r.records), else_=0)).label("records"),
        sa.func.sum(sa.case((r.in_window, r.failed_records), else_=0)).label("failed_records"),
    )
    return q.group_by(*(r[k] for k in keys)) if keys else q


def _numbers(row: sa.Row, days: float) -> dict[str, Any]:
    d = dict(row._mapping)
    d.pop("grouping")
    for k in (IN_PROGRESS, WAITING, SUCCEEDED, FAILED, CANCELLED, "records", "failed_records"):
        d[k] = int(d[k] or 0)
    decided = d[SUCCEEDED] + d[FAILED]
    d["success_rate"] = round(d[SUCCEEDED] / decided, 4) if decided else None
    for k in ("mean_seconds", "p95_seconds"):
        d[k] = round(float(d[k]), 3) if d[k] is not None else None
    d["records_per_day"] = round(d["records"] / days, 2) if days > 0 else float(d["records"])
    return d


def operation_stats(
    conn: sa.Connection,
    *,
    account_id: uuid.UUID | None = None,
    since: timedelta | datetime = timedelta(days=7),
    now: datetime | None = None,
) -> Stats:
    """Statistics of the operations started in the window (and of every one still in progress).

    Per group: in_progress (whenever started), waiting (previews not confirmed), succeeded,
    failed, cancelled (started in the window), success_rate (succeeded / (succeeded + failed),
    None when none ended), mean_seconds and p95_seconds (of the finished ones), records and
    failed_records (processed in the window), records_per_day (records / the window's days).
    """
    until = now or datetime.now(UTC)
    start = until - since if isinstance(since, timedelta) else since
    ops = operations()
    a = schema.accounts
    base = sa.select(
        ops.c.operation,
        # grouped by id (a uuid sorts faster than a name); the slugs replace them at the end
        ops.c.account_id.label("account"),
        status_class(ops.c.raw_status).label("cls"),
        (ops.c.started_at >= start).label("in_window"),
        seconds_between(ops.c.started_at, ops.c.finished_at).label("duration"),
        sa.func.coalesce(ops.c.records, 0).label("records"),
        sa.func.coalesce(ops.c.failed_records, 0).label("failed_records"),
    )
    base = base.where((ops.c.started_at >= start) | status_class(ops.c.raw_status).in_([IN_PROGRESS, WAITING]))
    slug = None
    if account_id is not None:
        base = base.where(ops.c.account_id == account_id)
        slug = conn.scalar(sa.select(a.c.slug).where(a.c.id == account_id))
    # one statement: the change sets are read once (a CTE used four times), each grouping ranks them
    cte = base.cte("base")
    days = (until - start).total_seconds() / 86400
    groups: dict[str, Any] = {name: [] for name in GROUPINGS}
    statement = sa.union_all(*(_aggregate(cte, name, keys) for name, keys in GROUPINGS.items()))
    # PostgreSQL: four sorts of the window's change sets in memory, not spilled to disk; and no JIT,
    # whose compiling of this many expressions took longer than the query (no-ops on SQLite)
    d = dialect_of(conn)
    with d.setting(conn, "work_mem", SORT_MEMORY), d.setting(conn, "jit", "off"):
        rows = conn.execute(statement).all()
    ids = {row.account for row in rows if row.account is not None}
    slugs = dict(conn.execute(sa.select(a.c.id, a.c.slug).where(a.c.id.in_(ids))).all()) if ids else {}
    for row in rows:
        numbers = _numbers(row, days)
        if numbers.get("account") is not None:
            numbers["account"] = slugs.get(numbers["account"], str(numbers["account"]))
        keys = GROUPINGS[row.grouping]
        groups[row.grouping].append(
            {k: v for k, v in numbers.items() if k in keys or k not in ("operation", "account")}
        )
    for name, keys in GROUPINGS.items():
        groups[name].sort(key=lambda g, keys=keys: tuple(g[k] for k in keys))
    groups["total"] = groups["total"][0]
    return Stats(start, until, slug, groups)


def parse_window(text: str) -> timedelta:
    """`7d`, `12h`, `30m`, `90s` or `2w` as a timedelta; ValueError naming the forms otherwise."""
    units = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
    raw = (text or "").strip().lower()
    if len(raw) < 2 or raw[-1] not in units or not raw[:-1].replace(".", "", 1).isdigit():
        raise ValueError(f"window {text!r}: give a number and a unit, such as 7d, 12h, 30m or 2w")
    value = float(raw[:-1])
    if value <= 0:
        raise ValueError(f"window {text!r} must be longer than zero, such as 7d")
    return timedelta(**{units[raw[-1]]: value})
