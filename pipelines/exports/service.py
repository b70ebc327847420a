"""Exports over the API: create one (an export_job run), read its state, hand its file to its account only.

An export is its Dagster run: the id the API answers is the run id, and the run's
materialization holds the file. Each API export also leaves a small record in its account's
folder (`<exports>/api/<account id>/.exports/<id>.json`: entity, format, time, and a launch that
failed), which answers before the run exists and is what ties the export to its account: an id
is looked up only in the token's account's folder, so another account's export answers 404, like
an unknown one, and a file is served only from that folder.
"""

from __future__ import annotations

import json
import os
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import ValidationError

from connectors import settings
from connectors.store import RecordStore, accounts
from pipelines.exports.config import ExportConfig, ExportRefused
from pipelines.exports.launch import check, export_result, launch_export

# what an API caller may set: the account is the token's, the folder is the API's
FIELDS = ("entity", "where", "include_deleted", "columns", "format", "name", "escape", "bom")
STATUSES = {
    dg.DagsterRunStatus.QUEUED: "pending",
    dg.DagsterRunStatus.NOT_STARTED: "pending",
    dg.DagsterRunStatus.STARTING: "pending",
    dg.DagsterRunStatus.STARTED: "processing",
    dg.DagsterRunStatus.SUCCESS: "completed",
    dg.DagsterRunStatus.FAILURE: "failed",
    dg.DagsterRunStatus.CANCELING: "cancelled",
    dg.DagsterRunStatus.CANCELED: "cancelled",
}


class ExportApiError(Exception):
    def __init__(self, http_status: int, code: str, message: str, details: dict | None = None) -> None:
        super().__init__(message)
        self.http_status = http_status
        self.code = code
        self.details = details or {}


RECORDS = ".exports"


def account_folder(account_id: uuid.UUID) -> Path:
    return settings.exports_dir() / "api" / str(account_id)


def _typed(condition: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in condition.items() if k != "value"}
    value = condition.get("value", "")
    if isinstance(value, list):
        out["values"] = [str(v) for v in value]
    else:
        out["value"] = "" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
    return out


def _config(payload: dict[str, Any], account_slug: str, account_id: uuid.UUID) -> ExportConfig:
    unknown = sorted(set(payload) - set(FIELDS))
    if unknown:
        hint = " (the account is the token's)" if "account" in unknown else ""
        raise ExportApiError(
            422,
            "invalid_request",
            f"unknown field(s): {', '.join(unknown)}{hint}",
            {"fields": unknown, "allowed": list(FIELDS)},
        )
    values = dict(payload)
    if isinstance(values.get("columns"), str):
        values["columns"] = [c for c in values["columns"].split(",") if c.strip()]
    where = values.get("where")
    if isinstance(where, str):
        values["where"] = [where]
    elif isinstance(where, list) and any(isinstance(w, dict) for w in where):
        # typed conditions ({field, op, value}) are the config's `filters`
        values["filters"] = [_typed(w) for w in where if isinstance(w, dict)]
        values["where"] = [w for w in where if not isinstance(w, dict)]
    try:
        return ExportConfig(**values, account=account_slug, out_dir=str(account_folder(account_id)))
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        raise ExportApiError(422, "invalid_request", f"{field}: {first['msg']}", {"field": field}) from None


def create(
    store: RecordStore,
    account_id: uuid.UUID,
    payload: dict[str, Any],
    *,
    instance: dg.DagsterInstance | None,
    database_url: str,
) -> dict[str, Any]:
    """Check the export, launch its run; the export object (pending)."""
    slug = _slug(store, account_id)
    config = _config(payload, slug, account_id)
    try:
        check(store, config, account_id)
    except ExportRefused as exc:
        raise ExportApiError(422, "invalid_request", str(exc)) from None
    records = account_folder(account_id) / RECORDS
    records.mkdir(parents=True, exist_ok=True)

    def failed(run_id: str, exc: BaseException) -> None:
        path = records / f"{run_id}.json"
        _write_record(path, {**_read_record(path), "id": run_id, "launch_error": str(exc)})

    run_id = launch_export(
        config, account_id=account_id, database_url=database_url, instance=instance, on_failure=failed
    )
    record = {
        "id": run_id,
        "entity": config.entity,
        "format": config.format,
        "created_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
    }
    path = records / f"{run_id}.json"
    # a launch that failed already wrote its error: keep it
    _write_record(path, {**record, **_read_record(path)})
    return _object(record, None, instance=None)


def _read_record(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}


def _write_record(path: Path, record: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.write_text(json.dumps(record), encoding="utf-8")
    os.replace(tmp, path)


def _slug(store: RecordStore, account_id: uuid.UUID) -> str:
    with store.engine.connect() as conn:
        return accounts.slug(conn, account_id)


def _own(instance: dg.DagsterInstance, account_id: uuid.UUID, export_id: str) -> tuple[dict, dg.DagsterRun | None]:
    """The export's record in ACCOUNT_ID's folder and its run (None before it exists); 404 otherwise."""
    try:
        export_id = str(uuid.UUID(export_id))
    except ValueError:
        raise ExportApiError(404, "not_found", f"no export {export_id} in this account") from None
    record = _read_record(account_folder(account_id) / RECORDS / f"{export_id}.json")
    if not record:
        raise ExportApiError(404, "not_found", f"no export {export_id} in this account")
    return record, instance.get_run_by_id(export_id)


def _object(record: dict[str, Any], run: dg.DagsterRun | None, instance: dg.DagsterInstance | None) -> dict[str, Any]:
    from pipelines.imports.launch import failure_message

    out: dict[str, Any] = {
        "id": record["id"],
        "status": "pending",
        "entity": record.get("entity"),
        "format": record.get("format"),
        "created_at": record.get("created_at"),
        "dagster_run_id": record["id"],
        "rows": None,
        "size_bytes": None,
        "filter": None,
        "file_name": None,
        "error_message": None,
    }
    if run is None:
        if record.get("launch_error"):
            out.update(
                status="failed",
                error_message=f"the export's Dagster run could not be launched: {record['launch_error']}",
            )
        return out
    out["status"] = STATUSES.get(run.status, "processing")
    if instance is not None and run.status == dg.DagsterRunStatus.SUCCESS:
        result = export_result(instance, run.run_id)
        if result is not None:
            out.update(rows=result.rows, size_bytes=result.size, filter=result.filter, file_name=Path(result.path).name)
    elif instance is not None and run.status == dg.DagsterRunStatus.FAILURE:
        out["error_message"] = failure_message(instance, run.run_id)
    return out


def get(instance: dg.DagsterInstance, account_id: uuid.UUID, export_id: str) -> dict[str, Any]:
    """The export object: status, and once completed its rows, size, filter and file name."""
    record, run = _own(instance, account_id, export_id)
    return _object(record, run, instance)


def file_of(instance: dg.DagsterInstance, account_id: uuid.UUID, export_id: str) -> Path:
    """The file of a completed export of ACCOUNT_ID; 404 for another account's, 409 before it is complete."""
    record, run = _own(instance, account_id, export_id)
    if run is None or run.status != dg.DagsterRunStatus.SUCCESS:
        status = _object(record, run, None)["status"]
        raise ExportApiError(409, "invalid_state", f"export {export_id} is {status}, not completed")
    result = export_result(instance, run.run_id)
    path = Path(result.path).resolve() if result else None
    folder = account_folder(account_id).resolve()
    if path is None or folder not in path.parents or not path.is_file():
        raise ExportApiError(404, "not_found", f"the file of export {export_id} is no longer there")
    return path


MEDIA_TYPES = {
    ".csv": "text/csv; charset=utf-8",
    ".xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    ".parquet": "application/vnd.apache.parquet",
}


def media_type(path: Path) -> str:
    return MEDIA_TYPES.get(path.suffix, "application/octet-stream")
