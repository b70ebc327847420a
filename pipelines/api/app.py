"""The bulk-job HTTP API: `bulk-jobs-create`, `bulk-jobs-get` and the safety endpoints.

Every route is `/api/bulk-jobs-<action>`, answers `{"ok": true, "result": ...}` or
`{"ok": false, "error": {"code", "message", "details"}}`, and is scoped to the account of the
bearer token. Request bodies are read raw under a size cap and parsed with `json.loads`, so a
bulk job of a million ids costs well under a second of parsing.
"""

from __future__ import annotations

import itertools
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

import dagster as dg
from fastapi import Depends, FastAPI, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi_offline import FastAPIOffline
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import FileResponse, StreamingResponse

from connectors import settings
from connectors.store import RecordStore
from connectors.store.bulk import ENTITY_ALIASES
from connectors.store.schema import BULK_JOB_MODES, BULK_JOB_STATUSES
from pipelines.api import models, tokens
from pipelines.api.wire import (
    ApiError,
    EnvelopeResponse,
    error_response,
    int_value,
    invalid,
    ok,
    read_json_object,
    string_value,
    uuid_list,
    uuid_value,
)
from pipelines.bulk import service

log = logging.getLogger("bulkops.api")

# a million ids is about 40 MB of compact JSON; leave room for pretty-printed bodies
DEFAULT_MAX_BODY_BYTES = 64 * 1024 * 1024
MAX_LIST_LIMIT = 1000
DOCS_URL = "/api/docs"
DOCS_STATIC_URL = "/api/docs-static"
MAX_PREVIEW_LIMIT = 10_000

STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "invalid_state",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
}


def max_body_bytes_from_env() -> int:
    return int(os.environ.get("BULKOPS_API_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES))


class Api:
    """What the routes share: the record store, the Dagster instance, the limits."""

    def __init__(self, database_url: str, instance: dg.DagsterInstance | None, max_body_bytes: int) -> None:
        self.database_url = database_url
        self.instance = instance
        self.max_body_bytes = max_body_bytes

    @cached_property
    def store(self) -> RecordStore:
        # opened on first use (or at startup), so the schema renders without a database
        return RecordStore(self.database_url)

    async def body(self, request: Request, *, required: bool = True) -> dict[str, Any]:
        # GET takes its arguments from the query string, POST from a JSON object
        if request.method == "GET":
            return dict(request.query_params)
        payload = await read_json_object(request, self.max_body_bytes, required=required)
        return {**request.query_params, **payload}

    async def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return await run_in_threadpool(fn, self.store, *args, **kwargs)
        except service.BulkJobError as exc:
            raise ApiError(exc.http_status, exc.code, str(exc), exc.details) from None

    async def launch(self, job: dict[str, Any]) -> dict[str, Any]:
        """Submit the bulk job's Dagster run; the bulk job is stored already, so a failure here is a 503.

        Without a webserver, `dagster job launch` goes on in a thread that reaps it (a failed launch
        fails the bulk job): the answer does not wait for it, and no child process is left behind.
        """
        from pipelines.bulk import launch

        try:
            run_id = await run_in_threadpool(
                launch.launch_bulk_job,
                uuid.UUID(str(job["id"])),
                database_url=self.database_url,
                instance=self.instance,
                background=True,
            )
        except Exception as exc:
            log.exception("could not launch the run of bulk job %s", job["id"])
            raise ApiError(
                503,
                "launch_failed",
                f"the bulk job was stored but its Dagster run could not be submitted: {exc}",
                {"job_id": str(job["id"])},
            ) from None
        return {**job, "dagster_run_id": run_id}


def _public(job: dict[str, Any], *, include_entity_ids: bool = False) -> dict[str, Any]:
    # a million ids do not belong in every answer: get returns them on request
    if include_entity_ids:
        return job
    return {k: v for k, v in job.items() if k != "entity_ids"}


def _flag(payload: dict[str, Any], field: str) -> bool:
    value = payload.get(field, False)
    if isinstance(value, str):
        value = value.lower()
        if value in ("true", "1", "yes"):
            return True
        if value in ("false", "0", "no", ""):
            return False
    if not isinstance(value, bool):
        raise invalid(f"{field} must be true or false", field=field, value=value)
    return value


def _validate_create(payload: dict[str, Any]) -> dict[str, Any]:
    fields = {"entity_type", "operation", "entity_ids", "params", "mode", "dry_run", "filter", "parallel"}
    unknown = sorted(set(payload) - fields)
    if unknown:
        raise invalid(f"unknown field(s): {', '.join(unknown)}", fields=unknown)
    entity_type = string_value(payload, "entity_type")
    canonical = ENTITY_ALIASES.get(entity_type, entity_type)
    if canonical not in service.OPERATIONS:
        raise invalid(
            f"unknown entity_type {entity_type!r}",
            field="entity_type",
            value=entity_type,
            allowed=sorted([*service.OPERATIONS, *ENTITY_ALIASES]),
        )
    operation = string_value(payload, "operation")
    allowed = service.OPERATIONS[canonical]
    if operation not in allowed:
        raise invalid(
            f"operation {operation!r} is not available for {entity_type}",
            field="operation",
            value=operation,
            allowed=list(allowed),
        )
    params = payload.get("params")
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise invalid("params must be a JSON object", field="params", received=type(params).__name__)
    mode = string_value(payload, "mode", required=False, default="execute")
    if _flag(payload, "dry_run"):
        if "mode" in payload and mode != "dry_run":
            raise invalid("dry_run: true contradicts mode", field="mode", value=mode)
        mode = "dry_run"
    if mode not in BULK_JOB_MODES:
        raise invalid(f"unknown mode {mode!r}", field="mode", value=mode, allowed=list(BULK_JOB_MODES))
    parallel = int_value(payload, "parallel", default=1, low=1, high=service.MAX_PARALLEL)
    spec: dict[str, Any] = {
        "entity_type": entity_type,
        "operation": operation,
        "params": params,
        "mode": mode,
        "parallel": parallel,
    }
    if payload.get("filter") is not None:
        # the records matching the filter (export filter language), resolved by the service in SQL
        if payload.get("entity_ids"):
            raise invalid("give entity_ids or filter, not both", field="filter")
        if not isinstance(payload["filter"], list | dict | str):
            raise invalid("filter must be a list of conditions or {where, include_deleted}", field="filter")
        return {**spec, "entity_ids": None, "filter": payload["filter"]}
    # contracts `create` with no ids means every hired application without a contract
    entity_ids = uuid_list(payload, "entity_ids", allow_empty=(canonical, operation) == ("contracts", "create"))
    return {**spec, "entity_ids": entity_ids}


def create_app(
    database_url: str | None = None,
    *,
    instance: dg.DagsterInstance | None = None,
    max_body_bytes: int | None = None,
) -> FastAPI:
    """Build the API application.

    Args:
        database_url: The record store; defaults to `$BULKOPS_DATABASE_URL` or var/bulkops.db.
        instance: The Dagster instance runs are submitted to; `None` means `$DAGSTER_HOME`'s.
        max_body_bytes: Largest accepted request body; defaults to `$BULKOPS_API_MAX_BODY_BYTES`
            or 64 MiB (a million ids take about 40 MB).

    Returns:
        The FastAPI application, ready for uvicorn.
    """
    api = Api(database_url or settings.database_url(), instance, max_body_bytes or max_body_bytes_from_env())

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # fail at startup, naming `bulkops db upgrade`, when the schema is behind
        await run_in_threadpool(lambda: api.store)
        yield
        api.store.dispose()

    # Swagger UI from the installed fastapi-offline package, served by this server: no CDN
    app = FastAPIOffline(
        title="bulkops bulk-job API",
        version="1",
        description=models.API_DESCRIPTION,
        openapi_url="/api/openapi.json",
        docs_url=DOCS_URL,
        redoc_url=None,
        static_url=DOCS_STATIC_URL,
        favicon_url=f"{DOCS_STATIC_URL}/favicon.png",
        swagger_ui_oauth2_redirect_url=f"{DOCS_URL}/oauth2-redirect",
        lifespan=lifespan,
    )
    app.state.api = api
    bearer = HTTPBearer(auto_error=False, description="An account's API token (`bulkops tokens create ACCOUNT`).")

    def principal(credentials: HTTPAuthorizationCredentials | None = Security(bearer)) -> tokens.Principal:
        if credentials is None:
            raise ApiError(401, "unauthorized", "missing bearer token: send `Authorization: Bearer <token>`")
        try:
            return tokens.authenticate(api.store, credentials.credentials)
        except tokens.TokenRevoked:
            raise ApiError(403, "token_revoked", "this API token was revoked") from None
        except tokens.TokenNotFound:
            raise ApiError(401, "unauthorized", "invalid bearer token") from None

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> EnvelopeResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> EnvelopeResponse:
        errors = [{"loc": list(e.get("loc", ())), "msg": e.get("msg"), "type": e.get("type")} for e in exc.errors()]
        message = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors) or "invalid request"
        return error_response(ApiError(422, "invalid_request", message, {"errors": errors}))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> EnvelopeResponse:
        code = STATUS_CODES.get(exc.status_code, "error")
        message = str(exc.detail)
        if exc.status_code == 404:
            message = f"no such endpoint: {request.method} {request.url.path}"
        elif exc.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path}"
        return error_response(ApiError(exc.status_code, code, message))

    @app.exception_handler(Exception)
    async def _internal_error(_: Request, exc: Exception) -> EnvelopeResponse:
        log.exception("unhandled error", exc_info=exc)
        return error_response(ApiError(500, "internal_error", "internal server error"))

    docs = models.route_docs

    def get_and_post(path: str, name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        # two routes, not one with two methods: each operation gets its own OpenAPI id
        def register(fn: Callable[..., Any]) -> Callable[..., Any]:
            app.get(path, **docs(name, "get"))(fn)
            app.post(path, **docs(name, "post"))(fn)
            return fn

        return register

    @app.get("/api/health", tags=["meta"], summary="Liveness: the process answers and the store is reachable")
    async def health() -> EnvelopeResponse:
        return ok({"status": "ok"})

    @app.post("/api/bulk-jobs-create", **docs("create", "post"))
    async def bulk_jobs_create(request: Request, who: tokens.Principal = Depends(principal)) -> EnvelopeResponse:
        marks = [("parse", time.perf_counter())]
        spec = _validate_create(await api.body(request))
        marks.append(("store", time.perf_counter()))
        job = await api.call(service.create_job, who.account_id, created_by=who.user_id, **spec)
        marks.append(("launch", time.perf_counter()))
        if spec["mode"] != "preview":
            job = await api.launch(job)
        marks.append(("", time.perf_counter()))
        response = ok(_public(job))
        # where the time of a create went (read+parse+validate, store, submit the run), in ms
        response.headers["Server-Timing"] = ", ".join(
            f"{name};dur={(end - start) * 1000:.1f}" for (name, start), (_, end) in itertools.pairwise(marks)
        )
        return response

    @get_and_post("/api/bulk-jobs-get", "get")
    async def bulk_jobs_get(request: Request, who: tokens.Principal = Depends(principal)) -> EnvelopeResponse:
        payload = await api.body(request)
        with_ids = _flag(payload, "include_entity_ids")
        job = await api.call(service.get_job, who.account_id, uuid_value(payload, "id"), include_entity_ids=with_ids)
        return ok(_public(job, include_entity_ids=with_ids))

    @get_and_post("/api/bulk-jobs-list", "list")
    async def bulk_jobs_list(request: Request, who: tokens.Principal = Depends(principal)) -> EnvelopeResponse:
        payload = await api.body(request, required=False)
        status = string_value(payload, "status", required=False)
        if status is not None and status not in BULK_JOB_STATUSES:
            raise invalid(f"unknown status {status!r}", field="status", value=status, allowed=list(BULK_JOB_STATUSES))
        limit = int_value(payload, "limit", default=50, low=1, high=MAX_LIST_LIMIT)
        before = _before(payload)
        jobs = await api.call(service.list_jobs, who.account_id, status=status, limit=limit, before=before)
        return ok([_public(job) for job in jobs])

    def _before(payload: dict[str, Any]) -> datetime | uuid.UUID | None:
        # a page boundary: a created_at timestamp, or the id of the last bulk job of the previous page
        value = payload.get("before")
        if value in (None, ""):
            return None
        if not isinstance(value, str):
            raise invalid("before must be a timestamp or a bulk job id", field="before", value=value)
        try:
            return uuid.UUID(value)
        except ValueError:
            pass
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            raise invalid(
                "before must be an ISO 8601 timestamp or a bulk job id", field="before", value=value
            ) from None
        return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)

    @app.post("/api/bulk-jobs-cancel", **docs("cancel", "post"))
    async def bulk_jobs_cancel(request: Request, who: tokens.Principal = Depends(principal)) -> EnvelopeResponse:
        job_id = uuid_value(await api.body(request), "id")
        job = await api.call(service.request_cancel, who.account_id, job_id)
        run_id = job.get("dagster_run_id")
        if run_id:
            from pipelines.bulk import launch

            await run_in_threadpool(launch.terminate_bulk_job_run, run_id, api.instance)
            job = await api.call(service.get_job, who.account_id, job_id)
        return ok(_public(job))

    @get_and_post("/api/bulk-jobs-preview", "preview")
    async def bulk_jobs_preview(request: Request, who: tokens.Principal = Depends(principal)) -> EnvelopeResponse:
        payload = await api.body(request)
        limit = int_value(payload, "limit", default=100, low=0, high=MAX_PREVIEW_LIMIT)
        plan = await api.call(service.preview, who.account_id, uuid_value(payload, "id"), limit=limit)
        return ok(plan)

    @app.post("/api/bulk-jobs-confirm", **docs("confirm", "post"))
    async def bulk_jobs_confirm(request: Request, who: tokens.Principal = Depends(principal)) -> EnvelopeResponse:
        payload = await api.body(request)
        job_id = uuid_value(payload, "id")
        plan_id = string_value(payload, "plan_id")
        job = await api.call(service.confirm, who.account_id, job_id, plan_id=plan_id)
        return ok(_public(await api.launch(job)))

    @app.post("/api/bulk-jobs-rollback", **docs("rollback", "post"))
    async def bulk_jobs_rollback(request: Request, who: tokens.Principal = Depends(principal)) -> EnvelopeResponse:
        job_id = uuid_value(await api.body(request), "id")
        job = await api.call(service.create_rollback, who.account_id, job_id, created_by=who.user_id)
        return ok(_public(await api.launch(job)))

    @get_and_post("/api/bulk-jobs-failed-records", "failed")
    async def bulk_jobs_failed_records(
        request: Request, who: tokens.Principal = Depends(principal)
    ) -> StreamingResponse:
        job_id = uuid_value(await api.body(request), "id")
        rows = await api.call(service.iter_failed_items_csv, who.account_id, job_id)
        rows = iter(rows)
        # pull the header now, so an unknown bulk job is a 404 and not a broken stream
        try:
            first = await run_in_threadpool(next, rows, None)
        except service.BulkJobError as exc:
            raise ApiError(exc.http_status, exc.code, str(exc), exc.details) from None
        head = [first] if first is not None else []
        return StreamingResponse(
            itertools.chain(head, rows),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="bulk-job-{job_id}-failed.csv"'},
        )

    # exports: the same tokens and envelopes; an export is its export_job run (pipelines/exports/service.py)
    async def export_call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        from pipelines.exports.service import ExportApiError

        try:
            return await run_in_threadpool(fn, *args, **kwargs)
        except ExportApiError as exc:
            raise ApiError(exc.http_status, exc.code, str(exc), exc.details) from None

    def dagster_instance() -> dg.DagsterInstance:
        return api.instance if api.instance is not None else dg.DagsterInstance.get()

    @app.post("/api/exports-create", **docs("exports-create", "post"))
    async def exports_create(request: Request, who: tokens.Principal = Depends(principal)) -> EnvelopeResponse:
        from pipelines.exports import service as exports

        payload = await api.body(request)
        try:
            export = await export_call(
                exports.create,
                api.store,
                who.account_id,
                payload,
                instance=api.instance,
                database_url=api.database_url,
            )
        except RuntimeError as exc:
            raise ApiError(503, "launch_failed", f"the export's Dagster run could not be submitted: {exc}") from None
        return ok(export)

    @get_and_post("/api/exports-get", "exports-get")
    async def exports_get(request: Request, who: tokens.Principal = Depends(principal)) -> EnvelopeResponse:
        from pipelines.exports import service as exports

        export_id = str(uuid_value(await api.body(request), "id"))
        return ok(await export_call(exports.get, dagster_instance(), who.account_id, export_id))

    @get_and_post("/api/exports-download", "exports-download")
    async def exports_download(request: Request, who: tokens.Principal = Depends(principal)) -> FileResponse:
        from pipelines.exports import service as exports

        export_id = str(uuid_value(await api.body(request), "id"))
        path = await export_call(exports.file_of, dagster_instance(), who.account_id, export_id)
        return FileResponse(path, filename=path.name, media_type=exports.media_type(path))

    @get_and_post("/api/stats-get", "stats")
    async def stats_get(request: Request, who: tokens.Principal = Depends(principal)) -> EnvelopeResponse:
        from pipelines.monitoring import report

        since = string_value(await api.body(request, required=False), "since", required=False, default="7d")
        try:
            result = await run_in_threadpool(report.stats_report, api.store, account_id=who.account_id, since=since)
        except ValueError as exc:
            raise invalid(str(exc), field="since", value=since) from None
        return ok(result.as_dict())

    @get_and_post("/api/change-sets-failed-records", "change_set_failed")
    async def change_sets_failed_records(
        request: Request, who: tokens.Principal = Depends(principal)
    ) -> StreamingResponse:
        from connectors.store import failures

        change_set_id = uuid_value(await api.body(request), "id")
        try:
            chunks = await run_in_threadpool(failures.csv_chunks, api.store, change_set_id, account_id=who.account_id)
        except failures.NoSuchChangeSet as exc:
            raise ApiError(404, "not_found", str(exc), {"id": str(change_set_id)}) from None
        except failures.FailedRecordsUnavailable as exc:
            raise ApiError(409, "invalid_state", str(exc), {"id": str(change_set_id)}) from None
        return StreamingResponse(
            iter(chunks),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{change_set_id}-failed.csv"'},
        )

    app.openapi = lambda: models.openapi_schema(app)  # type: ignore[method-assign]
    return app
