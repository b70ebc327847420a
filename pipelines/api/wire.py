"""What goes over the wire: envelopes, errors, size-capped JSON bodies, fast uuid-list checks."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from connectors.store.ids import canonical_uuid_strings


class ApiError(Exception):
    """An error answered as `{"ok": false, "error": {"code", "message", "details"}}`."""

    def __init__(self, status: int, code: str, message: str, details: dict | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details or {}


def invalid(message: str, **details: Any) -> ApiError:
    return ApiError(422, "invalid_request", message, details)


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            # the store writes UTC; SQLite hands it back naive
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, (uuid.UUID, Decimal)):
        return str(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"cannot encode {type(value).__name__}")


def dumps(payload: Any) -> bytes:
    return json.dumps(payload, default=_default, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


class EnvelopeResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return dumps(content)


def ok(result: Any, status: int = 200) -> EnvelopeResponse:
    return EnvelopeResponse({"ok": True, "result": result}, status_code=status)


def error_response(exc: ApiError) -> EnvelopeResponse:
    body = {"ok": False, "error": {"code": exc.code, "message": exc.message, "details": exc.details}}
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    return EnvelopeResponse(body, status_code=exc.status, headers=headers)


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The raw body, refused with 413 as soon as it passes `max_bytes` (declared or streamed)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise ApiError(400, "bad_request", "Content-Length is not a number") from None
        if size > max_bytes:
            raise _too_large(max_bytes, size)
    chunks: list[bytes] = []
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > max_bytes:
            raise _too_large(max_bytes, None)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(max_bytes: int, declared: int | None) -> ApiError:
    details: dict[str, Any] = {"max_bytes": max_bytes}
    if declared is not None:
        details["content_length"] = declared
    return ApiError(413, "payload_too_large", f"request body is larger than {max_bytes} bytes", details)


async def read_json_object(request: Request, max_bytes: int, *, required: bool = True) -> dict[str, Any]:
    """The body parsed as a JSON object; 400 when it is not JSON, 422 when it is not an object."""
    raw = await read_body(request, max_bytes)
    if not raw.strip():
        if required:
            raise ApiError(400, "malformed_json", "request body is empty: send a JSON object")
        return {}
    try:
        payload = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        details = {"line": exc.lineno, "column": exc.colno} if isinstance(exc, json.JSONDecodeError) else {}
        raise ApiError(400, "malformed_json", f"request body is not valid JSON: {exc}", details) from None
    if not isinstance(payload, dict):
        raise invalid("request body must be a JSON object", received=type(payload).__name__)
    return payload


def uuid_list(payload: dict[str, Any], field: str, *, allow_empty: bool = False) -> list[str]:
    """`payload[field]` as a list of lower-case canonical uuid strings, else 422."""
    if field not in payload:
        raise invalid(f"{field} is required", field=field)
    values = payload[field]
    if not isinstance(values, list):
        raise invalid(f"{field} must be an array of uuids", field=field, received=type(values).__name__)
    if not values:
        if allow_empty:
            return []
        raise invalid(f"{field} must not be empty", field=field)
    fast = canonical_uuid_strings(values)
    if fast is not None:
        return fast
    out: list[str] = []
    for index, value in enumerate(values):
        try:
            if not isinstance(value, str):
                raise ValueError
            out.append(str(uuid.UUID(value)))
        except ValueError:
            raise invalid(
                f"{field}[{index}] is not a uuid: {value!r:.60}", field=field, index=index, value=value
            ) from None
    return out


def uuid_value(payload: dict[str, Any], field: str) -> uuid.UUID:
    if field not in payload or payload[field] in (None, ""):
        raise invalid(f"{field} is required", field=field)
    value = payload[field]
    try:
        if not isinstance(value, str):
            raise ValueError
        return uuid.UUID(value)
    except ValueError:
        raise invalid(f"{field} is not a uuid: {value!r:.60}", field=field, value=value) from None


def string_value(
    payload: dict[str, Any], field: str, *, required: bool = True, default: str | None = None
) -> str | None:
    value = payload.get(field)
    if value is None:
        if required:
            raise invalid(f"{field} is required", field=field)
        return default
    if not isinstance(value, str) or not value:
        raise invalid(f"{field} must be a non-empty string", field=field, value=value)
    return value


def int_value(payload: dict[str, Any], field: str, *, default: int, low: int, high: int) -> int:
    value = payload.get(field, default)
    if isinstance(value, str) and value.lstrip("-").isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise invalid(f"{field} must be an integer from {low} to {high}", field=field, value=value)
    return value
