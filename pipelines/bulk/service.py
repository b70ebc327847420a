"""The bulk-job service layer: create, read, preview/confirm, cancel, rollback (no Dagster here).

The HTTP API and the CLI call these functions; the Dagster job executes what they store.
Every function takes the caller's account and never reads or writes another account's rows.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any


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


OPERATIONS: dict[str, tuple[str, ...]] = {}


def create_job(store, account_id, *, created_by=None, entity_type, operation, entity_ids, params=None, mode="execute") -> dict:
    raise NotImplementedError


def get_job(store, account_id, job_id) -> dict:
    raise NotImplementedError


def list_jobs(store, account_id, *, status=None, limit=50, before=None) -> list[dict]:
    raise NotImplementedError


def preview(store, account_id, job_id, *, limit=100) -> dict:
    raise NotImplementedError


def confirm(store, account_id, job_id, *, plan_id) -> dict:
    raise NotImplementedError


def request_cancel(store, account_id, job_id) -> dict:
    raise NotImplementedError


def create_rollback(store, account_id, job_id, *, created_by=None) -> dict:
    raise NotImplementedError


def iter_failed_items_csv(store, account_id, job_id) -> Iterator[str]:
    raise NotImplementedError


def job_to_dict(row) -> dict:
    raise NotImplementedError
