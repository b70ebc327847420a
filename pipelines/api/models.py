"""Request and response shapes, for the OpenAPI schema only: bodies are parsed by hand (see wire.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, Field

from pipelines.bulk.service import MAX_PARALLEL

API_DESCRIPTION = """\
Bulk jobs over recruiting records: one operation applied to many records of one account, run by Dagster.

Authenticate with `Authorization: Bearer <token>` (create one with `bulkops tokens create ACCOUNT`).
The token's account scopes every call: another account's bulk job ids answer 404.
Every answer is `{"ok": true, "result": ...}` or `{"ok": false, "error": {"code", "message", "details"}}`.
Endpoints that read take their arguments from the query string (GET) or a JSON object (POST).
"""

Status = Literal["pending", "processing", "completed", "failed", "cancelled"]
Mode = Literal["execute", "preview", "dry_run"]


class FilterCondition(BaseModel):
    field: str = Field(
        description="A field of the entity: a column, a related field (job_code, candidate_email) or tags."
    )
    op: Literal["=", "!=", ">", ">=", "<", "<=", "~", "in", "not in"] = "="
    value: str | list[str] = Field(default="", description="The value; a list for in / not in.")


class FilterSpec(BaseModel):
    where: list[str | FilterCondition] = Field(description="Conditions, all of which must hold.")
    include_deleted: bool = Field(default=False, description="Also select soft-deleted records.")


class CreateJobRequest(BaseModel):
    """The create body: what to do to which records, and how (mode)."""

    entity_type: str = Field(description="Record type: applications, contracts, candidates (contacts), jobs.")
    operation: str = Field(description="Operation to perform; allowed values depend on entity_type.")
    entity_ids: list[UUID] | None = Field(
        default=None,
        description="Record ids, at least one (up to 2,000,000); contracts `create` with [] means every hired "
        "application without a contract. Leave out when giving `filter`.",
    )
    filter: list[str | FilterCondition] | FilterSpec | None = Field(
        default=None,
        description="Instead of entity_ids: the account's records matching these conditions (the exports' filter "
        "language: 'stage=review', 'applied_at>=2026-01-01', 'tags=vip', 'job=ENG-1', or {field, op, value}), "
        "resolved to ids when the bulk job is created and shown as the bulk job's `filter`.",
    )
    params: dict[str, Any] | None = Field(
        default=None,
        description="Operation-specific parameters. A status or stage must be one of the account's values "
        "(`bulkops accounts values show ACCOUNT`), else 422 with details.allowed.",
    )
    mode: Mode = Field(
        default="execute",
        description="execute runs now; preview stores a plan to confirm; dry_run reports without writing.",
    )
    dry_run: bool = Field(default=False, description="Shorthand for mode=dry_run.")
    parallel: int = Field(
        default=1,
        ge=1,
        le=MAX_PARALLEL,
        description="Apply the records in this many ranges at once, each a step of a `sharded_bulk_job` run "
        "(exact counters, audit and outcomes as with one cursor); 1, the default, is one cursor (`bulk_job`). "
        f"Kept by the bulk job: a relaunch runs the same ranges. Out of 1..{MAX_PARALLEL}: 422 naming `parallel`.",
    )


class JobIdRequest(BaseModel):
    id: UUID = Field(description="Bulk job id.")


class GetJobRequest(JobIdRequest):
    include_entity_ids: bool = Field(
        default=False, description="Also return entity_ids (large bulk jobs: large answer)."
    )


class ListJobsRequest(BaseModel):
    status: Status | None = None
    limit: int = Field(default=50, ge=1, le=1000)
    before: str | None = Field(
        default=None,
        description="List bulk jobs created before this ISO 8601 timestamp, or after this bulk job id in the list's order "
        "(newest first): pass the last id of a page to get the next page.",
    )


class PreviewRequest(JobIdRequest):
    limit: int = Field(default=100, ge=0, le=10_000, description="How many changes to list.")


class ConfirmRequest(JobIdRequest):
    plan_id: str = Field(description="The plan_id returned by bulk-jobs-preview.")


class BulkJob(BaseModel):
    """The bulk job object (entity_ids only on request) with its run and tracking fields."""

    id: UUID
    account_id: UUID
    created_by: UUID | None = None
    entity_type: str
    operation: str
    entity_ids: list[UUID] | None = Field(default=None, description="Only from bulk-jobs-get with include_entity_ids.")
    params: dict[str, Any]
    status: Status = Field(
        description="completed: every record processed, some may have failed (failed_count); failed: every record "
        "failed, or the bulk job itself failed (error_message says why); cancelled: stopped on request."
    )
    total_count: int
    processed_count: int
    failed_count: int
    error_message: str | None = Field(
        default=None,
        description="Why a failed bulk job failed, e.g. 'all 3 records failed: not found (3)'; null unless failed.",
    )
    created_at: datetime
    updated_at: datetime
    mode: Mode | None = None
    dagster_run_id: str | None = None
    filter: dict[str, Any] | None = Field(
        default=None,
        description="The filter that chose the records: {where: [{field, op, value}], include_deleted, words}; "
        "null for a bulk job created with entity_ids.",
    )
    parallel: int = Field(
        default=1, description="Ranges of records applied at once (`sharded_bulk_job`); 1: one cursor (`bulk_job`)."
    )
    model_config = {"extra": "allow"}


class Plan(BaseModel):
    plan_id: str
    total: int
    changes: list[dict[str, Any]]
    not_found: Any = None
    model_config = {"extra": "allow"}


class ExportCondition(BaseModel):
    field: str = Field(
        description="A field of the entity: a column, a related field (job_code, candidate_email) or tags."
    )
    op: Literal["=", "!=", ">", ">=", "<", "<=", "~", "in", "not in"] = "="
    value: str | list[str] = Field(default="", description="The value; a list for in / not in.")


class CreateExportRequest(BaseModel):
    """The exports-create body: which of the token's account's records, which columns, which format."""

    entity: str = Field(default="applications", description="applications, candidates (contacts), jobs, contracts.")
    where: list[str | ExportCondition] = Field(
        default_factory=list,
        description="Conditions, all of which must hold: texts like 'stage=review', 'applied_at>=2026-01-01', "
        "'source~linked', 'stage in review,interview', 'tags=vip', or {field, op, value} objects.",
    )
    include_deleted: bool = Field(default=False, description="Also export soft-deleted records.")
    columns: list[str] | str = Field(
        default_factory=list,
        description="Columns in order, FIELD or FIELD:Header (a list or a comma-separated text); empty: all fields.",
    )
    format: Literal["csv", "xlsx", "parquet"] = "csv"
    name: str | None = Field(default=None, description="File name template ({entity} {date} {timestamp} ...).")
    escape: bool = Field(default=True, description="CSV: neutralise formula cells (off only for programs).")
    bom: bool = Field(default=False, description="CSV: UTF-8 with a byte-order mark, for Excel.")


class ExportIdRequest(BaseModel):
    id: UUID = Field(description="Export id (as exports-create answered it).")


class Export(BaseModel):
    """An export: its run's state and, once completed, its file."""

    id: UUID
    status: Status
    entity: str | None = None
    format: str | None = None
    rows: int | None = None
    size_bytes: int | None = None
    filter: str | None = Field(default=None, description="The filter in words.")
    file_name: str | None = Field(default=None, description="Download it with exports-download.")
    error_message: str | None = None
    dagster_run_id: str
    model_config = {"extra": "allow"}


class ExportEnvelope(BaseModel):
    ok: Literal[True]
    result: Export


class Error(BaseModel):
    code: str = Field(description="Machine-readable: malformed_json, unauthorized, token_revoked, not_found, ...")
    message: str
    details: dict[str, Any] = Field(default_factory=dict)


class JobEnvelope(BaseModel):
    ok: Literal[True]
    result: BulkJob


class JobListEnvelope(BaseModel):
    ok: Literal[True]
    result: list[BulkJob]


class PlanEnvelope(BaseModel):
    ok: Literal[True]
    result: Plan


class ErrorEnvelope(BaseModel):
    ok: Literal[False]
    error: Error


_ERRORS = {
    400: "Malformed JSON (`malformed_json`) or a bad header (`bad_request`).",
    401: "Missing or unknown bearer token (`unauthorized`).",
    403: "Revoked token (`token_revoked`).",
    404: "No such bulk job or export in the token's account (`not_found`).",
    409: "The bulk job's or export's status does not allow this (`invalid_state`).",
    413: "Body larger than the configured maximum (`payload_too_large`).",
    422: "Validation failed (`invalid_request`): the message and details name the field.",
    503: "The Dagster run could not be submitted (`launch_failed`).",
}


class StatsRequest(BaseModel):
    since: str = Field(
        default="7d", description="The window the numbers cover, back from now: a number and a unit (s, m, h, d, w)."
    )


class StatsGroup(BaseModel):
    """The numbers of one group of operations (an operation kind, an account, both, or all)."""

    operation: str | None = Field(
        default=None, description="import, bulk_job.<operation>, sync, document_import, rollback."
    )
    account: str | None = None
    in_progress: int = Field(description="Running now (whenever they started).")
    waiting: int = Field(description="Previews waiting for their confirm.")
    succeeded: int
    failed: int
    cancelled: int
    success_rate: float | None = Field(description="succeeded / (succeeded + failed); null when none ended.")
    mean_seconds: float | None
    p95_seconds: float | None
    records: int = Field(description="Records processed in the window.")
    failed_records: int
    records_per_day: float


class Stats(BaseModel):
    since: datetime
    until: datetime
    window_days: float
    account: str | None
    by_operation_and_account: list[StatsGroup]
    by_operation: list[StatsGroup]
    by_account: list[StatsGroup]
    total: StatsGroup


class StatsEnvelope(BaseModel):
    ok: Literal[True]
    result: Stats


class ChangeSetIdRequest(BaseModel):
    id: UUID = Field(description="Id of an import, bulk job, sync run or document import (its change set).")


_ROUTES: dict[str, dict[str, Any]] = {
    "create": {
        "summary": "Create a bulk job and submit its Dagster run",
        "body": CreateJobRequest,
        "ok": JobEnvelope,
        "errors": (400, 401, 403, 413, 422, 503),
    },
    "get": {
        "summary": "A bulk job's status and counts",
        "body": GetJobRequest,
        "ok": JobEnvelope,
        "errors": (400, 401, 403, 404, 422),
    },
    "list": {
        "summary": "The account's bulk jobs, newest first",
        "body": ListJobsRequest,
        "ok": JobListEnvelope,
        "errors": (400, 401, 403, 422),
    },
    "cancel": {
        "summary": "Cancel a bulk job: marks the cancel request and terminates its Dagster run",
        "body": JobIdRequest,
        "ok": JobEnvelope,
        "errors": (400, 401, 403, 404, 409, 422),
    },
    "preview": {
        "summary": "The records a preview-mode bulk job would change, and the exact changes",
        "body": PreviewRequest,
        "ok": PlanEnvelope,
        "errors": (400, 401, 403, 404, 409, 422),
    },
    "confirm": {
        "summary": "Execute exactly the previewed plan (plan_id from bulk-jobs-preview)",
        "body": ConfirmRequest,
        "ok": JobEnvelope,
        "errors": (400, 401, 403, 404, 409, 422, 503),
    },
    "rollback": {
        "summary": "Roll back a completed or cancelled bulk job from its before-images (a new bulk job)",
        "body": JobIdRequest,
        "ok": JobEnvelope,
        "errors": (400, 401, 403, 404, 409, 422, 503),
    },
    "failed": {
        "summary": "The bulk job's failed records as CSV (streamed)",
        "body": JobIdRequest,
        "ok": None,
        "errors": (400, 401, 403, 404, 422),
    },
    "exports-create": {
        "operation_id": "exports_create",
        "summary": "Export the account's filtered records to CSV, Excel or Parquet (an export_job Dagster run)",
        "body": CreateExportRequest,
        "ok": ExportEnvelope,
        "errors": (400, 401, 403, 413, 422, 503),
        "tag": "exports",
    },
    "exports-get": {
        "operation_id": "exports_get",
        "summary": "An export's status and, once completed, its rows, size, filter and file name",
        "body": ExportIdRequest,
        "ok": ExportEnvelope,
        "errors": (400, 401, 403, 404, 422),
        "tag": "exports",
    },
    "exports-download": {
        "operation_id": "exports_download",
        "summary": "The file of a completed export, to its account only",
        "body": ExportIdRequest,
        "ok": None,
        "errors": (400, 401, 403, 404, 409, 422),
        "tag": "exports",
        "file": "The export file (text/csv, Excel or Parquet).",
    },
    "stats": {
        "summary": "Statistics of the account's bulk operations: in progress, success rate, durations, records per day",
        "body": StatsRequest,
        "ok": StatsEnvelope,
        "errors": (400, 401, 403, 422),
        "operation_id": "stats_get",
        "tag": "monitoring",
    },
    "change_set_failed": {
        "summary": "The failed records of any import, bulk job, sync run or document import, as CSV (streamed)",
        "body": ChangeSetIdRequest,
        "ok": None,
        "errors": (400, 401, 403, 404, 409, 422),
        "operation_id": "change_sets_failed_records",
        "tag": "monitoring",
        "csv": "CSV, one row per failed record with its reason: an import's failed-rows file (_row, _line, _column, "
        "_error, the original row), a bulk job's entity_id, error, seq, status. Formula-safe: a cell a spreadsheet "
        "would run starts with ' and its original is in _original.",
    },
}

REQUEST_MODELS = {spec["body"].__name__: spec["body"] for spec in _ROUTES.values()}


def route_docs(name: str, method: str) -> dict[str, Any]:
    spec = _ROUTES[name]
    body = spec["body"]
    responses: dict[int | str, dict[str, Any]] = {
        status: {"model": ErrorEnvelope, "description": _ERRORS[status]} for status in spec["errors"]
    }
    if spec["ok"] is None and "file" in spec:
        responses[200] = {"description": spec["file"], "content": {"application/octet-stream": {}}}
    elif spec["ok"] is None:
        responses[200] = {
            "description": spec.get("csv")
            or "CSV (entity_id, error, seq, status, _original), one row per failed record, streamed. "
            "A cell a spreadsheet would run as a formula starts with ' and its original is in _original.",
            "content": {"text/csv": {}},
        }
    else:
        responses[200] = {"model": spec["ok"], "description": "The result"}
    return {
        "operation_id": f"{spec.get('operation_id', f'bulk_jobs_{name}')}_{method}",
        "summary": spec["summary"],
        "tags": [spec.get("tag", "bulk jobs")],
        "response_model": None,
        "responses": responses,
        "openapi_extra": {
            "requestBody": {
                "required": name not in ("list",),
                "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{body.__name__}"}}},
            }
        },
    }


def openapi_schema(app: FastAPI) -> dict[str, Any]:
    """FastAPI's schema plus the hand-parsed request bodies as components."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for name, model in REQUEST_MODELS.items():
        body = model.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(body.pop("$defs", {}))
        components[name] = body
    # GET routes take the same fields from the query string; the body applies to POST only
    for path in schema["paths"].values():
        get = path.get("get")
        if not get or "requestBody" not in get:
            continue
        ref = get.pop("requestBody")["content"]["application/json"]["schema"]["$ref"]
        model = components[ref.rsplit("/", 1)[-1]]
        required = set(model.get("required", ()))
        get["parameters"] = [
            {"name": field, "in": "query", "required": field in required, "schema": prop}
            for field, prop in model["properties"].items()
        ]
    app.openapi_schema = schema
    return schema
