"""A JSON HTTP API as a sync source (httpx): pagination, auth, rate limits and retries.

Pagination styles:
- `link`: follow the `Link: <...>; rel="next"` header (Greenhouse Harvest, GitHub);
- `cursor`: the body names the next page's token (`next_field`, e.g. Lever's `next`, with
  `has_more_field` `hasNext`) sent back as `cursor_param`;
- `page`: `page_param` = 1, 2, ... until a page comes back short or empty.

Auth: `token` as a bearer token, or `username`/`password` as HTTP basic (Greenhouse and Lever take
the API key as the basic username). Retries: a `429` waits its `Retry-After` (seconds or an HTTP
date), a 5xx, a timeout or a dropped connection waits 0.5 s, 1 s, 2 s, ... ; after `max_retries`
the read fails with `SyncSourceError(transient=True)` and the run is retried by its step policy.

Rows are flattened to text columns by `fields` (column -> path such as `emails[0]` or
`current_stage.name`), or else the record's top-level values (objects and lists as JSON text).
`explode` turns each element of a list field into a row, its parent's values under `parent.`.

Writes (a sync out, `write_batches`): JSON POST, PUT or PATCH, per batch or per record, with the
same auth, retries and 429 handling; each request carries an `Idempotency-Key`.

Incremental reads: `since_param` carries the last completed run's cursor value to the API
(Greenhouse `updated_after`, Lever `updated_at_start`); rows at or before the position are
dropped client-side. An API's pages are not in cursor order, so the position is committed when
the run completes (`final_position`), not per batch: a resumed run reads from its start again,
and rows already written are unchanged.
"""

from __future__ import annotations

import email.utils
import json
import re
import time
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import quote

import httpx
import pyarrow as pa

from connectors.sync.base import Batch, Position, SyncSourceError

LINK_NEXT = re.compile(r'<([^>]+)>\s*;\s*rel="?next"?')
PATH_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def parse_path(path: str) -> tuple[str | int, ...]:
    """`a.b[0].c` -> ("a", "b", 0, "c")."""
    return tuple(name or int(index) for name, index in PATH_PART.findall(path))


def extract(record: Any, path: str | tuple[str | int, ...]) -> Any:
    """The value at PATH (`a.b[0].c`, or its parsed form) of RECORD, None where it is missing."""
    value = record
    for part in parse_path(path) if isinstance(path, str) else path:
        if isinstance(part, str):
            if not isinstance(value, dict):
                return None
            value = value.get(part)
        else:
            if not isinstance(value, list) or part >= len(value):
                return None
            value = value[part]
    return value


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _retry_after(response: httpx.Response, default: float) -> float:
    value = response.headers.get("Retry-After")
    if value is None:
        return default
    if value.strip().isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
        return max(0.0, (when - datetime.now(UTC)).total_seconds())
    except (TypeError, ValueError):
        return default


def _json_default(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    return str(value)


def _order(value: Any) -> Any:
    """A cursor value in comparable form (numbers as numbers, ISO text as aware datetimes)."""
    if isinstance(value, (int, float)):
        return (0, value)
    if isinstance(value, str):
        try:
            t = datetime.fromisoformat(value.replace("Z", "+00:00"))
            return (1, t if t.tzinfo else t.replace(tzinfo=UTC))
        except ValueError:
            return (2, value)
    return (3, str(value))


class HttpConnector:
    """Records of one JSON endpoint, page by page."""

    def __init__(
        self,
        url: str,
        *,
        key: str,
        cursor: str | None = None,
        name: str = "http",
        token: str | None = None,
        username: str | None = None,
        password: str | None = None,
        pagination: dict[str, Any] | None = None,
        records: str | None = None,
        fields: dict[str, str] | None = None,
        explode: str | None = None,
        params: dict[str, Any] | None = None,
        since_param: str | None = None,
        since_format: Callable[[Any], Any] | None = None,
        write: dict[str, Any] | None = None,
        max_retries: int = 5,
        backoff: float = 0.5,
        timeout: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.name = name
        self.url = url
        self.key = key
        self.cursor = cursor
        self.pagination = {"style": "link", **(pagination or {})}
        self.records = records
        self.fields = fields
        self.explode = explode
        self.params = dict(params or {})
        self.since_param = since_param
        self.since_format = since_format or (lambda v: v)
        # a sync out: method (POST, PUT, PATCH), url (`{key}`: one request per record), records
        self.write = dict(write or {})
        self.max_retries = max_retries
        self.backoff = backoff
        self.sleep = sleep
        auth = httpx.BasicAuth(username, password or "") if username is not None else None
        headers = {"Accept": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        self.client = httpx.Client(auth=auth, headers=headers, timeout=timeout, follow_redirects=True)
        self.final_position: Position | None = None
        self._columns: list[str] | None = list(fields) if fields else None
        self._paths = {c: parse_path(p) for c, p in (fields or {}).items()}
        self.requests = 0

    # -- HTTP

    def _get(self, url: str, params: dict[str, Any] | None) -> tuple[httpx.Response, Any]:
        return self._request("GET", url, params=params)

    def _request(
        self,
        method: str,
        url: str,
        *,
        params: dict[str, Any] | None = None,
        body: Any = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[httpx.Response, Any]:
        """One request, retried: a 429 after its Retry-After, a 5xx, a timeout or a dropped
        connection with backoff; the response and its JSON body (None for an empty write answer)."""
        attempt = 0
        content = None if body is None else json.dumps(body, default=_json_default).encode()
        if content is not None:
            headers = {"Content-Type": "application/json", **(headers or {})}
        while True:
            self.requests += 1
            try:
                response = self.client.request(method, url, params=params, content=content, headers=headers)
            except httpx.TransportError as exc:
                # timeouts, refused and dropped connections, truncated bodies
                why = type(exc).__name__
                response = None
            else:
                if response.status_code < 400:
                    if method != "GET" and not response.content.strip():
                        return response, None
                    try:
                        return response, response.json()
                    except ValueError:
                        if method != "GET":
                            return response, None
                        why = "a body that is not JSON"
                elif response.status_code == 429 or response.status_code >= 500:
                    why = f"HTTP {response.status_code}"
                else:
                    raise SyncSourceError(
                        f"{self.name}: the API refused the {method}: HTTP {response.status_code}"
                        + (" (check the credentials)" if response.status_code in (401, 403) else "")
                    )
            attempt += 1
            if attempt > self.max_retries:
                raise SyncSourceError(f"{self.name}: the API failed {attempt} times, last with {why}", transient=True)
            wait = self.backoff * 2 ** (attempt - 1)
            if response is not None and response.status_code == 429:
                wait = _retry_after(response, wait)
            self.sleep(wait)

    def _pages(self, since: Position | None) -> Iterator[list[dict]]:
        p = self.pagination
        params = dict(self.params)
        if since is not None and self.since_param:
            params[self.since_param] = self.since_format(since.value)
        if p.get("page_size_param"):
            params[p["page_size_param"]] = p.get("page_size", 100)
        style = p["style"]
        url: str | None = self.url
        page = int(p.get("first_page", 1))
        while url is not None:
            if style == "page":
                params[p.get("page_param", "page")] = page
            response, body = self._get(url, params)
            items = extract(body, self.records) if self.records else body
            if not isinstance(items, list):
                raise SyncSourceError(
                    f"{self.name}: the response holds no list of records at {self.records or 'its top'}"
                )
            yield items
            if style == "link":
                found = LINK_NEXT.search(response.headers.get("Link", ""))
                url, params = (found.group(1), None) if found else (None, None)
            elif style == "cursor":
                token = extract(body, p.get("next_field", "next"))
                more = extract(body, p["has_more_field"]) if p.get("has_more_field") else token is not None
                if not more or not token:
                    url = None
                else:
                    params = {**params, p.get("cursor_param", "cursor"): token}
            else:
                size = p.get("page_size")
                if not items or (size and len(items) < int(size)):
                    url = None
                page += 1

    # -- rows

    def _rows(self, item: dict) -> list[dict]:
        if not self.explode:
            return [item]
        children = extract(item, self.explode) or []
        parent = {k: v for k, v in item.items() if k != self.explode}
        return [{**child, "parent": parent} for child in children if isinstance(child, dict)]

    def _flat(self, row: dict) -> dict[str, str | None]:
        if self.fields:
            return {c: _text(extract(row, path)) for c, path in self._paths.items()}
        return {k: _text(v) for k, v in row.items() if k != "parent"}

    def columns(self) -> list[str]:
        if self._columns is None:
            # the first page's records name the columns of an API without declared fields
            first = next(self._pages(None), [])
            names: dict[str, None] = {}
            for item in first:
                for row in self._rows(item):
                    names.update(dict.fromkeys(self._flat(row)))
            self._columns = list(names) or [self.key]
        return self._columns

    def read_batches(self, since: Position | None, batch_size: int) -> Iterator[Batch]:
        columns = self.columns()
        after = None if since is None else (_order(since.value), str(since.key))
        best = since
        pending: list[dict] = []
        for items in self._pages(since):
            for item in items:
                for row in self._rows(item):
                    flat = self._flat(row)
                    if self.cursor is not None:
                        value = extract(row, self.cursor) if not self.fields else flat.get(self.cursor)
                        at = (_order(value), str(flat.get(self.key)))
                        if after is not None and at <= after:
                            continue
                        if value is not None and (best is None or at > (_order(best.value), str(best.key))):
                            best = Position(value, flat.get(self.key))
                    pending.append(flat)
            while len(pending) >= batch_size:
                yield Batch(self._table(columns, pending[:batch_size]), None)
                pending = pending[batch_size:]
        if pending:
            yield Batch(self._table(columns, pending), None)
        self.final_position = best

    @staticmethod
    def _table(columns: list[str], rows: list[dict]) -> pa.Table:
        return pa.table({c: pa.array([r.get(c) for r in rows], pa.string()) for c in columns})

    def read_keys(self, batch_size: int) -> Iterator[list[str]]:
        keys: list[str] = []
        for items in self._pages(None):
            for item in items:
                for row in self._rows(item):
                    k = self._flat(row).get(self.key)
                    if k is not None:
                        keys.append(k)
            if len(keys) >= batch_size:
                yield keys
                keys = []
        if keys:
            yield keys

    # -- writes (a sync out)

    def write_batches(self, rows: list[dict[str, Any]], *, batch: str | None = None) -> tuple[int, int]:
        """Send ROWS (column -> value) as JSON with the connection's `write` settings; (inserted, updated).

        With `{key}` in the write URL, one request per row (the row as the body, the URL naming
        its key); else one request for the batch: a JSON list, or `{records: [...]}` when
        `records` is set. BATCH names the batch: sent as the `Idempotency-Key` header, so an API
        that honours it does not apply a re-sent batch twice. A POST counts as inserted, a PUT or
        PATCH as updated.
        """
        if not rows:
            return 0, 0
        w = self.write
        method = str(w.get("method", "POST")).upper()
        url = str(w.get("url") or self.url)
        headers = {"Idempotency-Key": batch} if batch else None
        if "{key}" in url:
            for i, row in enumerate(rows):
                one = {"Idempotency-Key": f"{batch}-{i}"} if batch else None
                self._request(
                    method, url.replace("{key}", quote(str(row.get(self.key, "")), safe="")), body=row, headers=one
                )
        else:
            body: Any = {w["records"]: rows} if w.get("records") else rows
            self._request(method, url, body=body, headers=headers)
        return (len(rows), 0) if method == "POST" else (0, len(rows))

    def close(self) -> None:
        self.client.close()
