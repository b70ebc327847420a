"""The bulk-job service layer: create, read, preview/confirm, cancel, rollback (no Dagster here).

The HTTP API and the CLI call these functions; the Dagster job (`pipelines.bulk.jobs.bulk_job`)
executes what they store, and `pipelines.bulk.launch` submits that run. Every function takes
the caller's account and never reads or writes another account's rows: a job id of another
account is `JobNotFound`, a record id of another account fails its item as "not found".
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from connectors import settings
from connectors.files import csvsafe
from connectors.store import RecordStore, accounts, bulk, schema
from connectors.store.bulk import jobs, selection
from connectors.store.export.filters import FilterError
from connectors.store.ids import canonical_uuid_strings

if TYPE_CHECKING:
    import sqlalchemy as sa

MODES = ("execute", "preview", "dry_run")
MAX_ENTITY_IDS = 2_000_000
# ranges a bulk job's records may be applied in at once (`parallel`): 1 is one cursor
MAX_PARALLEL = 16
STATUSES = schema.BULK_JOB_STATUSES
TERMINAL = ("completed", "failed", "cancelled")


class BulkJobError(Exception):
    """Base of the errors the service raises for a caller's request.

    Attributes:
        code: machine-readable error code.
        http_status: the HTTP status an API should answer with.
        details: extra, JSON-serializable facts about the problem.
    """

    code = "bulk_job_error"
    http_status = 400

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}


class JobNotFound(BulkJobError):
    """No bulk job with that id in the caller's account (also for another account's ids)."""

    code = "not_found"
    http_status = 404


class InvalidRequest(BulkJobError):
    """Unknown entity type or operation, bad params, bad mode, too many ids."""

    code = "invalid_request"
    http_status = 422


class InvalidState(BulkJobError):
    """The job's status does not allow the action (confirm a completed job, rollback a running one)."""

    code = "invalid_state"
    http_status = 409


OPERATIONS: dict[str, tuple[str, ...]] = dict(bulk.OPERATIONS)
"""Entity type -> operations a caller may create (`contacts` is accepted as an alias of `candidates`)."""

FIELD_ALLOW_LIST: dict[str, tuple[str, ...]] = dict(bulk.FIELD_ALLOW_LIST)
"""Entity type -> fields `field_update` may change."""


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def job_to_dict(row: Any) -> dict:
    """The bulk job object, JSON-ready: the job's fields, counts, mode, plan and run.

    Args:
        row: a `bulk_jobs` row (mapping or Row); `entity_ids` is included only when the row has it.
    """
    m: Mapping[str, Any] = row._mapping if hasattr(row, "_mapping") else row
    out: dict[str, Any] = {
        "id": str(m["id"]),
        "account_id": str(m["account_id"]),
        "created_by": str(m["created_by"]) if m["created_by"] else None,
        "entity_type": m["entity_type"],
        "operation": m["operation"],
    }
    if "entity_ids" in m:
        out["entity_ids"] = [str(i) for i in (m["entity_ids"] or [])]
    out.update(
        {
            "params": m["params"] or {},
            "status": m["status"],
            "total_count": m["total_count"],
            "processed_count": m["processed_count"],
            "failed_count": m["failed_count"],
            "error_message": m["error_message"],
            "created_at": _iso(m["created_at"]),
            "updated_at": _iso(m["updated_at"]),
            "skipped_count": m["skipped_count"],
            "succeeded_count": m["processed_count"] - m["failed_count"] - m["skipped_count"],
            "mode": m["mode"],
            "plan_id": m["plan_id"],
            "awaiting_confirmation": m["mode"] == "preview" and m["status"] == "pending",
            "cancel_requested": m["cancel_requested_at"] is not None,
            "dagster_run_id": m["dagster_run_id"],
            "rollback_of": str(m["rollback_of"]) if m["rollback_of"] else None,
            "started_at": _iso(m["started_at"]),
            "finished_at": _iso(m["finished_at"]),
            "summary": m["summary"] or {},
            # the filter that chose the records ({where, include_deleted, words}), null for a list of ids
            "filter": (m["summary"] or {}).get("filter"),
            # ranges applied at once (sharded_bulk_job); 1: one cursor (bulk_job)
            "parallel": parallel_of(m),
        }
    )
    return out


def _as_uuid(value: Any, what: str) -> uuid.UUID:
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except (ValueError, AttributeError, TypeError):
        raise InvalidRequest(f"{what} is not a UUID: {str(value)[:80]!r}", details={"field": what}) from None


def _row(conn: sa.Connection, account_id: uuid.UUID, job_id: Any, *, lock: bool = False, full: bool = False) -> sa.Row:
    row = jobs.find(conn, account_id, _as_job_id(job_id), lock=lock, full=full)
    if row is None:
        raise JobNotFound(f"no bulk job {job_id}", details={"id": str(job_id)})
    return row


def _as_job_id(job_id: Any) -> uuid.UUID:
    try:
        return job_id if isinstance(job_id, uuid.UUID) else uuid.UUID(str(job_id))
    except (ValueError, TypeError, AttributeError):
        raise JobNotFound(f"no bulk job {job_id}", details={"id": str(job_id)}) from None


def check_parallel(parallel: Any) -> int:
    """PARALLEL as the ranges count of a bulk job: an integer from 1 to MAX_PARALLEL.

    Raises:
        InvalidRequest: anything else, naming the field `parallel`.
    """
    if isinstance(parallel, bool) or not isinstance(parallel, int) or not 1 <= parallel <= MAX_PARALLEL:
        raise InvalidRequest(
            f"parallel must be an integer from 1 to {MAX_PARALLEL}, not {parallel!r}",
            details={"field": "parallel", "value": parallel, "min": 1, "max": MAX_PARALLEL},
        )
    return parallel


def parallel_of(row: Any) -> int:
    """The ranges count a bulk job asked for (`summary.parallel`), else its ranges' count when a run split it
    (the Launchpad's `sharded_bulk_job`); 1: one cursor."""
    summary = (row._mapping if hasattr(row, "_mapping") else row)["summary"] or {}
    return summary.get("parallel") or len(summary.get("ranges") or ()) or 1


def create_job(
    store: RecordStore,
    account_id: uuid.UUID,
    *,
    created_by: uuid.UUID | None,
    entity_type: str,
    operation: str,
    entity_ids: Sequence[uuid.UUID] | None = None,
    params: dict | None = None,
    mode: str = "execute",
    filter: Any = None,
    parallel: int = 1,
) -> dict:
    """Store a bulk job and its items; a preview job also gets its plan.

    Args:
        store: the record store.
        account_id: the caller's account; records of other accounts fail as not found.
        created_by: the user creating the job (audit actor), or None for the system.
        entity_type: applications, contracts, candidates (alias contacts) or jobs.
        operation: one of `OPERATIONS[entity_type]`.
        entity_ids: record ids (duplicates are dropped, first occurrence wins). For contracts
            `create` they are application ids; empty means every hired/completed application
            of the account without a contract.
        params: operation parameters (see docs/bulk-jobs.md).
        mode: "execute" (pending, ready to run), "preview" (plan computed now, runs only after
            `confirm`) or "dry_run" (the run reports outcomes and writes no record).
        filter: instead of `entity_ids`, the records of the account matching this filter (the
            export filter language: a list of conditions, texts like "stage=review" or
            {field, op, value}, or {"where": [...], "include_deleted": bool}). It is resolved to
            ids now, in SQL, and kept on the job (`filter` of the job object).
        parallel: apply the records in this many ranges at once (1 to MAX_PARALLEL), each a step
            of the `sharded_bulk_job` run `launch.launch_bulk_job` launches; 1 (the default) is
            the one-cursor `bulk_job`. Kept on the job (`summary.parallel`), so a relaunch keeps it.

    Returns:
        The job as `job_to_dict`.

    Raises:
        InvalidRequest: unknown entity type, operation or mode; bad params or ids; too many ids;
            a hard delete not created in preview or dry-run mode; unknown automations; both
            `entity_ids` and `filter`, a bad filter, or a filter that matches no record; a
            `parallel` out of 1..MAX_PARALLEL.
    """
    summary = {"parallel": parallel} if check_parallel(parallel) > 1 else {}
    entity_type = bulk.canonical_entity_type(entity_type) if isinstance(entity_type, str) else entity_type
    if entity_type not in OPERATIONS:
        raise InvalidRequest(
            f"unknown entity_type {entity_type!r}",
            details={"field": "entity_type", "allowed": sorted(OPERATIONS) + sorted(bulk.ENTITY_ALIASES)},
        )
    if operation not in OPERATIONS[entity_type]:
        raise InvalidRequest(
            f"operation {operation!r} is not available for {entity_type}",
            details={"field": "operation", "allowed": list(OPERATIONS[entity_type])},
        )
    if mode not in MODES:
        raise InvalidRequest(f"unknown mode {mode!r}", details={"field": "mode", "allowed": list(MODES)})
    if params is not None and not isinstance(params, dict):
        raise InvalidRequest("params must be an object", details={"field": "params"})
    with store.engine.connect() as conn:
        account_settings = accounts.settings(conn, account_id)
    try:
        clean = bulk.validate_params(entity_type, operation, params, account_settings)
    except bulk.ParamsError as exc:
        raise InvalidRequest(str(exc), details=exc.details) from None
    if operation == "delete" and clean["hard"] and mode == "execute":
        raise InvalidRequest(
            "a hard delete must be confirmed separately: create it with mode=preview, review the preview, then confirm",
            details={"field": "mode", "required": "preview"},
        )
    if filter is not None:
        if entity_ids:
            raise InvalidRequest(
                "give entity_ids or filter, not both", details={"field": "filter", "conflicts_with": "entity_ids"}
            )
        return _create_by_filter(
            store, account_id, created_by, entity_type, operation, clean, mode, filter, account_settings, summary
        )
    if entity_ids is None or isinstance(entity_ids, (str, bytes)):
        raise InvalidRequest("entity_ids must be a list of UUIDs", details={"field": "entity_ids"})
    if len(entity_ids) > MAX_ENTITY_IDS:
        raise InvalidRequest(
            f"at most {MAX_ENTITY_IDS} entity_ids per job",
            details={"field": "entity_ids", "max": MAX_ENTITY_IDS, "got": len(entity_ids)},
        )
    # canonical uuid strings (what the API hands over) are checked in one vectorised pass and
    # de-duplicated as strings; anything else is parsed id by id
    fast = canonical_uuid_strings(entity_ids) if isinstance(entity_ids, list) else None
    ids: list[Any]
    if fast is not None:
        ids = list(dict.fromkeys(fast))
    else:
        ids = list(dict.fromkeys(_as_uuid(i, "entity_ids") for i in entity_ids))
    if created_by is not None:
        created_by = _as_uuid(created_by, "created_by")
    with store.begin() as conn:
        if not ids:
            if entity_type == "contracts" and operation == "create":
                ids = bulk.hiring_completions(conn, account_id)
            else:
                raise InvalidRequest("entity_ids must not be empty", details={"field": "entity_ids"})
        _check_automations(conn, account_id, entity_type, operation, clean, account_settings)
        job_id = jobs.insert_job(
            conn,
            account_id,
            created_by=created_by,
            entity_type=entity_type,
            operation=operation,
            params=clean,
            entity_ids=ids,
            mode=mode,
            now=bulk.utcnow(),
            summary=summary,
        )
    if mode == "preview":
        bulk.plan_job(store, job_id)
    return get_job(store, account_id, job_id)


def _check_automations(
    conn: Any, account_id: uuid.UUID, entity_type: str, operation: str, clean: dict[str, Any], account_settings: Any
) -> None:
    """trigger_automations only: the automations must exist for the account (else a 422 naming them)."""
    if operation != "trigger_automations":
        return
    try:
        bulk.check_automations(conn, account_id, entity_type, clean["automations"], account_settings)
    except bulk.ParamsError as exc:
        raise InvalidRequest(str(exc), details=exc.details) from None


def _create_by_filter(
    store: RecordStore,
    account_id: uuid.UUID,
    created_by: Any,
    entity_type: str,
    operation: str,
    clean: dict[str, Any],
    mode: str,
    spec: Any,
    account_settings: Any,
    summary: dict[str, Any],
) -> dict:
    entity = selection.selected_entity(entity_type, operation)
    try:
        flt = selection.parse(spec)
        ids = selection.id_select(entity, store.dialect, account_id, flt)
    except FilterError as exc:
        raise InvalidRequest(str(exc), details={"field": "filter"}) from None
    if created_by is not None:
        created_by = _as_uuid(created_by, "created_by")
    kept = selection.stored(flt, entity)
    with store.begin() as conn:
        _check_automations(conn, account_id, entity_type, operation, clean, account_settings)
        job_id = jobs.insert_job(
            conn,
            account_id,
            created_by=created_by,
            entity_type=entity_type,
            operation=operation,
            params=clean,
            entity_ids=(),
            mode=mode,
            now=bulk.utcnow(),
            selection=ids,
            summary={**summary, "filter": kept},
        )
        total = jobs.find(conn, account_id, job_id).total_count
        # raising rolls the job and its items back: nothing is stored
        if total == 0:
            raise InvalidRequest(f"no record matches the filter: {kept['words']}", details={"filter": kept})
        if total > MAX_ENTITY_IDS:
            raise InvalidRequest(
                f"the filter matches {total} records: at most {MAX_ENTITY_IDS} per job; narrow it",
                details={"field": "filter", "max": MAX_ENTITY_IDS, "got": total},
            )
    if mode == "preview":
        bulk.plan_job(store, job_id)
    return get_job(store, account_id, job_id)


def _expired(plan: str, row: Any) -> InvalidState:
    hours = settings.preview_ttl_hours()
    return InvalidState(
        f"plan {plan} of bulk job {row.id} expired: a preview can be executed for {hours:g} h "
        "(BULKOPS_PREVIEW_TTL_HOURS); preview again",
        details={"id": str(row.id), "status": "cancelled", "planned_at": _iso(row.planned_at)},
    )


def _refuse_if_expired(store_or_conn: Any, row: Any) -> None:
    """Cancel the pending preview ROW and refuse it when its plan is older than the preview TTL."""
    if bulk.expire_previews(store_or_conn, ttl_hours=settings.preview_ttl_hours(), job_id=row.id):
        raise _expired(row.plan_id, row)


def find_plan(store: RecordStore, account_id: uuid.UUID, plan: str, *, run_id: str | None = None) -> dict:
    """The account's previewed bulk job whose plan id (or bulk job id) is PLAN, ready to confirm.

    A bulk job that RUN_ID already confirmed and started (a retry of that run) is returned as it is.

    Raises:
        JobNotFound: no bulk job of this account has that plan (a plan replaced by a new preview
            of its bulk job is no longer found by its old id).
        InvalidState: the bulk job is no longer a pending preview (already confirmed, run or cancelled).
    """
    plan = (plan or "").strip()
    if not plan:
        raise InvalidRequest("plan_id is empty: preview first, then execute with the plan_id it shows")
    with store.engine.connect() as conn:
        row = jobs.find_plan(conn, account_id, plan)
    if row is None:
        raise JobNotFound(
            f"no previewed plan {plan} in this account (a new preview replaces a plan): preview again",
            details={"plan_id": plan},
        )
    resuming = run_id is not None and row.dagster_run_id == run_id and row.status in ("pending", "processing")
    if not resuming and row.status == "pending" and row.mode == "preview":
        _refuse_if_expired(store, row)
    if row.status == "cancelled" and (row.error_message or "").startswith(bulk.PREVIEW_EXPIRED):
        raise _expired(plan, row)
    if (row.status != "pending" or row.mode != "preview") and not resuming:
        raise InvalidState(
            f"plan {plan} of bulk job {row.id} was already used: the bulk job is {row.status} ({row.mode}); "
            "preview again for a new plan",
            details={"id": str(row.id), "status": row.status, "mode": row.mode},
        )
    return job_to_dict(row)


def get_job(store: RecordStore, account_id: uuid.UUID, job_id: uuid.UUID, *, include_entity_ids: bool = False) -> dict:
    """The job as `job_to_dict` (with mode, plan and run fields).

    Raises:
        JobNotFound: no such job in this account.
    """
    with store.engine.connect() as conn:
        row = _row(conn, account_id, job_id)
        if not include_entity_ids:
            return job_to_dict(row)
        # the ids live once, in bulk_job_items (seq order); bulk_jobs.entity_ids is no longer written
        return job_to_dict({**row._mapping, "entity_ids": jobs.entity_ids(conn, row.id)})


def list_jobs(
    store: RecordStore,
    account_id: uuid.UUID,
    *,
    status: str | None = None,
    limit: int = 50,
    before: datetime | uuid.UUID | None = None,
) -> list[dict]:
    """The account's jobs, newest first (by created_at, then id).

    Args:
        before: a page boundary: a timestamp (jobs created before it), or the id of the last job
            of the previous page (the jobs after it in this order, even those created in the same
            instant).

    Raises:
        InvalidRequest: unknown status or a limit outside 1..1000.
        JobNotFound: `before` is the id of no job of this account.
    """
    if status is not None and status not in STATUSES:
        raise InvalidRequest(f"unknown status {status!r}", details={"field": "status", "allowed": list(STATUSES)})
    if not isinstance(limit, int) or not 1 <= limit <= 1000:
        raise InvalidRequest("limit must be between 1 and 1000", details={"field": "limit"})
    after_job = created_before = None
    if isinstance(before, uuid.UUID):
        after_job = before
    elif before is not None:
        created_before = before.astimezone(UTC) if before.tzinfo is not None else before
    with store.engine.connect() as conn:
        if after_job is not None:
            _row(conn, account_id, after_job)
        rows = jobs.page(
            conn, account_id, status=status, limit=limit, after_job=after_job, created_before=created_before
        )
        return [job_to_dict(r) for r in rows]


def preview(store: RecordStore, account_id: uuid.UUID, job_id: uuid.UUID, *, limit: int = 100) -> dict:
    """The plan of a job: affected records and the exact change of each.

    A pending job without a plan is planned now and switches to preview mode (it then runs only
    after `confirm`). A dry-run job reports its outcomes once its run completed.

    Returns:
        {"job_id", "plan_id", "total", "changes": [{"entity_id", "before", "after"}], "would_change",
        "not_found", "skipped", "failed", "problems": [{"entity_id", "error"}]} with at most
        `limit` changes and problems.

    Raises:
        JobNotFound, InvalidState (a job that already ran, except dry runs), InvalidRequest (bad limit).
    """
    if not isinstance(limit, int) or not 0 <= limit <= 10_000:
        raise InvalidRequest("limit must be between 0 and 10000", details={"field": "limit"})
    with store.engine.connect() as conn:
        job = _row(conn, account_id, job_id)
    if job.mode == "dry_run":
        # a dry run in which every record would fail ends failed, its report complete all the same
        if job.status not in ("completed", "failed") or job.processed_count < job.total_count:
            raise InvalidState(
                f"the dry run is {job.status}: its report is ready when it completes", details={"status": job.status}
            )
    elif job.status != "pending":
        raise InvalidState(f"job is {job.status}: only pending jobs can be previewed", details={"status": job.status})
    elif job.plan_id is None or job.mode != "preview":
        with store.begin() as conn:
            jobs.update_job(conn, job.id, only_if_status="pending", mode="preview", updated_at=bulk.utcnow())
        bulk.plan_job(store, job.id)
    with store.engine.connect() as conn:
        job = _row(conn, account_id, job_id)
        done = job.mode == "dry_run"
        changes, problems = jobs.plan_items(conn, job.id, ran=done, limit=limit)
        not_found = jobs.count_not_found(conn, job.id) if done else 0
    plan = (job.summary or {}).get("plan", {})
    if done:
        plan = {
            "changes": job.processed_count - job.failed_count - job.skipped_count,
            "failed": job.failed_count,
            "skipped": job.skipped_count,
            "not_found": not_found,
        }
    return {
        "job_id": str(job.id),
        "plan_id": job.plan_id,
        "mode": job.mode,
        "entity_type": job.entity_type,
        "operation": job.operation,
        "params": job.params or {},
        "total": job.total_count,
        "would_change": plan.get("changes", 0),
        "not_found": plan.get("not_found", 0),
        "failed": plan.get("failed", 0),
        "skipped": plan.get("skipped", 0),
        "changes": [{"entity_id": str(r.entity_id), "before": r.before, "after": r.after} for r in changes],
        "problems": [{"entity_id": str(r.entity_id), "error": r.error} for r in problems],
    }


def confirm(
    store: RecordStore, account_id: uuid.UUID, job_id: uuid.UUID, *, plan_id: str, run_id: str | None = None
) -> dict:
    """Release a previewed job for execution; the run applies exactly the previewed records.

    Records whose touched fields changed after the preview are skipped and reported per item
    ("changed since preview"), never silently applied. The caller then launches the run.

    Raises:
        JobNotFound; InvalidState when the job is not a pending preview or `plan_id` is not its
        current plan (preview again).
    """
    with store.begin() as conn:
        job = _row(conn, account_id, job_id, lock=True)
        if job.status != "pending" or job.mode != "preview":
            raise InvalidState(
                f"job is {job.status} ({job.mode}): only a pending preview can be confirmed",
                details={"status": job.status, "mode": job.mode},
            )
        if not plan_id or plan_id != job.plan_id:
            raise InvalidState(
                "plan_id does not match the job's current plan: preview again", details={"plan_id": job.plan_id}
            )
        expired = bulk.expire_previews(conn, ttl_hours=settings.preview_ttl_hours(), job_id=job.id)
        if not expired:
            now = bulk.utcnow()
            # RUN_ID: the Dagster run that executes it, recorded with the confirmation (a retry of that run resumes)
            extra = {"dagster_run_id": run_id} if run_id else {}
            jobs.update_job(conn, job.id, mode="execute", confirmed_at=now, updated_at=now, **extra)
    if expired:
        # the preview is cancelled (committed above), and stays so
        raise _expired(plan_id, job)
    return get_job(store, account_id, job_id)


def request_cancel(store: RecordStore, account_id: uuid.UUID, job_id: uuid.UUID) -> dict:
    """Ask a job to stop: a pending job is cancelled at once, a processing one at its next batch.

    The caller also terminates the job's Dagster run (`launch.terminate_bulk_job_run`); the
    run then marks the job cancelled with the counts of the batches it committed.

    Raises:
        JobNotFound; InvalidState when the job already finished.
    """
    now = bulk.utcnow()
    with store.begin() as conn:
        job = _row(conn, account_id, job_id, lock=True)
        if job.status in TERMINAL:
            raise InvalidState(f"job is already {job.status}", details={"status": job.status})
        values: dict[str, Any] = {"cancel_requested_at": job.cancel_requested_at or now, "updated_at": now}
        if job.status == "pending":
            values.update(status="cancelled", finished_at=now)
        jobs.update_job(conn, job.id, **values)
    return get_job(store, account_id, job_id)


def create_rollback(
    store: RecordStore, account_id: uuid.UUID, job_id: uuid.UUID, *, created_by: uuid.UUID | None = None
) -> dict:
    """A new bulk job that restores the before-images of a completed or cancelled job.

    It covers the records the job changed (succeeded items); a record changed again since then is
    skipped and reported. The rollback is audited like any job; launch it like any job.

    Raises:
        JobNotFound; InvalidState when the job is not completed/cancelled, was a dry run or preview,
        cannot be undone (trigger_automations, hard delete, a rollback), or already has a rollback.
    """
    with store.begin() as conn:
        job = _row(conn, account_id, job_id, lock=True)
        if job.status not in ("completed", "cancelled"):
            raise InvalidState(
                f"job is {job.status}: only completed or cancelled jobs can be rolled back",
                details={"status": job.status},
            )
        if job.mode != "execute":
            raise InvalidState(f"a {job.mode} job changed nothing", details={"mode": job.mode})
        if not bulk.can_roll_back(job.operation, job.params or {}):
            what = "hard delete" if job.operation == "delete" else job.operation
            raise InvalidState(f"{what} cannot be rolled back", details={"operation": job.operation})
        existing = jobs.live_rollback(conn, job.id)
        if existing is not None:
            raise InvalidState(f"job already has rollback {existing}", details={"rollback_id": str(existing)})
        rollback_id = jobs.insert_job(
            conn,
            account_id,
            created_by=_as_uuid(created_by, "created_by") if created_by else None,
            entity_type=job.entity_type,
            operation=bulk.ROLLBACK,
            params={"rollback_of": str(job.id), "operation": job.operation},
            entity_ids=jobs.succeeded_ids(conn, job.id),
            mode="execute",
            now=bulk.utcnow(),
            rollback_of=job.id,
        )
    return get_job(store, account_id, rollback_id)


FAILED_CSV_COLUMNS = ("entity_id", "error", "seq", "status")


def iter_failed_items_csv(
    store: RecordStore, account_id: uuid.UUID, job_id: uuid.UUID, *, chunk_rows: int = 5000
) -> Iterator[str]:
    """The failed records of a job as CSV text, in chunks of up to `chunk_rows` lines.

    Columns: entity_id, error, seq, status and `_original` (`connectors.files.csvsafe`: an error
    text that a spreadsheet would run as a formula is written with a leading `'`, its original
    kept there). The rows come from a server-side cursor, so memory stays flat whatever the size.

    Raises:
        JobNotFound (at the call, before the first chunk).
    """
    with store.engine.connect() as conn:
        job = _row(conn, account_id, job_id)

    def chunks() -> Iterator[str]:
        buf = io.StringIO()
        writer = csvsafe.SafeCsvWriter(buf, FAILED_CSV_COLUMNS, lineterminator="\n")
        with store.engine.connect() as conn:
            for part in jobs.failed_items(conn, job.id, chunk_rows=chunk_rows):
                if buf.tell():
                    yield buf.getvalue()
                    buf.seek(0)
                    buf.truncate()
                writer.writerows((str(r[0]), r[1] or "", r[2], r[3]) for r in part)
        yield buf.getvalue()

    return chunks()


def run_job_now(store: RecordStore, account_id: uuid.UUID, job_id: uuid.UUID, *, batch_size: int | None = None) -> dict:
    """Process a job in this process without Dagster (scripts, benchmarks); returns the job."""
    with store.engine.connect() as conn:
        job = _row(conn, account_id, job_id)
    bulk.run_job(store, job.id, batch_size=batch_size)
    return get_job(store, account_id, job_id)
