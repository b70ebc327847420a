"""Bad requests answer 400/401/403/404/413/422 in the error envelope, naming the problem."""

from __future__ import annotations

import json
import socket
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest

from connectors.store import RecordStore
from pipelines.api.tokens import create_token, revoke_token
from tests.api.conftest import SMALL_BODY_LIMIT
from tests.api.helpers import error

EXAMPLE_IDS = [
    "550e8400-e29b-41d4-a716-446655440000",
    "550e8400-e29b-41d4-a716-446655440001",
    "550e8400-e29b-41d4-a716-446655440002",
]
VALID = {"entity_type": "contacts", "operation": "delete", "entity_ids": EXAMPLE_IDS}


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b'{"entity_type": "contacts",', id="truncated"),
        pytest.param(b"{'entity_type': 'contacts'}", id="single-quotes"),
        pytest.param(b"entity_type=contacts", id="form-encoded"),
        pytest.param(b"\xff\xfe{}", id="not-utf8"),
        pytest.param(b"", id="empty"),
    ],
)
def test_malformed_json_is_400(client: httpx.Client, body: bytes) -> None:
    err = error(client.post("/api/bulk-jobs-create", content=body, headers={"Content-Type": "application/json"}), 400)
    assert err["code"] == "malformed_json"
    assert "JSON" in err["message"]


def test_malformed_json_names_line_and_column(client: httpx.Client) -> None:
    err = error(client.post("/api/bulk-jobs-create", content=b'{\n  "entity_type": contacts\n}'), 400)
    assert err["details"] == {"line": 2, "column": 18}


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="no-header"),
        pytest.param({"Authorization": "Basic dXNlcjpwYXNz"}, id="basic-scheme"),
        pytest.param({"Authorization": "Bearer"}, id="bearer-without-token"),
        pytest.param({"Authorization": "Bearer not-a-real-token"}, id="unknown-token"),
    ],
)
def test_missing_or_unknown_token_is_401(anonymous: httpx.Client, headers: dict[str, str]) -> None:
    response = anonymous.post("/api/bulk-jobs-create", json=VALID, headers=headers)
    err = error(response, 401)
    assert err["code"] == "unauthorized"
    assert response.headers["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize("revoke_by", ["id", "token"])
def test_revoked_token_is_403(anonymous: httpx.Client, store: RecordStore, account: uuid.UUID, revoke_by: str) -> None:
    issued = create_token(store, account, name="to-revoke")
    assert revoke_token(store, str(issued.id) if revoke_by == "id" else issued.token) == 1
    headers = {"Authorization": f"Bearer {issued.token}"}
    err = error(anonymous.get("/api/bulk-jobs-get", params={"id": EXAMPLE_IDS[0]}, headers=headers), 403)
    assert err["code"] == "token_revoked"
    assert revoke_token(store, issued.token) == 0


def test_auth_comes_before_body_checks(anonymous: httpx.Client) -> None:
    err = error(anonymous.post("/api/bulk-jobs-create", content=b"{not json"), 401)
    assert err["code"] == "unauthorized"


def test_unknown_endpoint_and_method_use_the_envelope(client: httpx.Client) -> None:
    assert error(client.get("/api/bulk-jobs-nope"), 404)["code"] == "not_found"
    assert error(client.get("/api/bulk-jobs-create"), 405)["code"] == "method_not_allowed"


@pytest.mark.parametrize(
    ("change", "field", "fragment"),
    [
        pytest.param({"entity_type": "spaceships"}, "entity_type", "unknown entity_type", id="unknown-entity-type"),
        pytest.param({"operation": "explode"}, "operation", "not available", id="unknown-operation"),
        pytest.param({"entity_ids": []}, "entity_ids", "must not be empty", id="empty-ids"),
        pytest.param({"entity_ids": None}, "entity_ids", "must be an array", id="null-ids"),
        pytest.param(
            {"entity_ids": "550e8400-e29b-41d4-a716-446655440000"}, "entity_ids", "must be an array", id="ids-not-array"
        ),
        pytest.param(
            {"entity_ids": [*EXAMPLE_IDS, "550e8400-nope"]}, "entity_ids", "entity_ids[3] is not a uuid", id="bad-uuid"
        ),
        pytest.param(
            {"entity_ids": [*EXAMPLE_IDS, 42]}, "entity_ids", "entity_ids[3] is not a uuid", id="number-in-ids"
        ),
        pytest.param({"params": ["tag"]}, "params", "must be a JSON object", id="params-not-object"),
        pytest.param({"mode": "yolo"}, "mode", "unknown mode", id="unknown-mode"),
        pytest.param({"entity_type": ""}, "entity_type", "non-empty string", id="blank-entity-type"),
        pytest.param({"colour": "red"}, None, "unknown field(s): colour", id="unknown-field"),
    ],
)
def test_invalid_create_is_422(client: httpx.Client, change: dict, field: str | None, fragment: str) -> None:
    err = error(client.post("/api/bulk-jobs-create", json={**VALID, **change}), 422)
    assert err["code"] == "invalid_request"
    assert fragment in err["message"]
    if field is not None:
        assert err["details"]["field"] == field


@pytest.mark.parametrize("missing", ["entity_type", "operation", "entity_ids"])
def test_missing_required_field_is_422(client: httpx.Client, missing: str) -> None:
    body = {k: v for k, v in VALID.items() if k != missing}
    err = error(client.post("/api/bulk-jobs-create", json=body), 422)
    assert err["message"] == f"{missing} is required"


def test_empty_ids_are_refused_outside_contracts_create(client: httpx.Client) -> None:
    err = error(client.post("/api/bulk-jobs-create", json={**VALID, "entity_ids": [], "params": {"x": 1}}), 422)
    assert err["message"] == "entity_ids must not be empty"


def test_body_must_be_an_object(client: httpx.Client) -> None:
    err = error(client.post("/api/bulk-jobs-create", json=EXAMPLE_IDS), 422)
    assert err["details"] == {"received": "list"}


def test_unknown_operation_lists_the_allowed_ones(client: httpx.Client) -> None:
    err = error(client.post("/api/bulk-jobs-create", json={**VALID, "operation": "explode"}), 422)
    assert "delete" in err["details"]["allowed"]


@pytest.mark.parametrize(
    ("method", "kwargs"),
    [
        pytest.param("GET", {"params": {"id": "nope"}}, id="get-query"),
        pytest.param("POST", {"json": {"id": "nope"}}, id="post-body"),
        pytest.param("POST", {"json": {}}, id="post-missing"),
    ],
)
def test_bad_job_id_is_422(client: httpx.Client, method: str, kwargs: dict) -> None:
    err = error(client.request(method, "/api/bulk-jobs-get", **kwargs), 422)
    assert err["details"]["field"] == "id"


def test_unknown_job_is_404(client: httpx.Client) -> None:
    err = error(client.get("/api/bulk-jobs-get", params={"id": str(uuid.uuid4())}), 404)
    assert err["code"] == "not_found"


@pytest.fixture
def small_client(small_limit_url: str, token: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=small_limit_url, headers={"Authorization": f"Bearer {token}"}, timeout=60) as c:
        yield c


def _oversized() -> bytes:
    n = SMALL_BODY_LIMIT // 38 + 10
    return json.dumps({**VALID, "entity_ids": [str(uuid.uuid4()) for _ in range(n)]}).encode()


def test_oversized_declared_body_is_413(small_client: httpx.Client) -> None:
    body = _oversized()
    err = error(small_client.post("/api/bulk-jobs-create", content=body), 413)
    assert err["code"] == "payload_too_large"
    assert err["details"] == {"max_bytes": SMALL_BODY_LIMIT, "content_length": len(body)}


def test_oversized_streamed_body_is_413_before_it_is_all_read(small_limit_url: str, token: str) -> None:
    # chunked, so no Content-Length; the body is never finished, so only a server that counts
    # while reading can answer
    url = urlsplit(small_limit_url)
    chunk = b" " * 16384
    with socket.create_connection((url.hostname, url.port), timeout=30) as sock:
        sock.sendall(
            b"POST /api/bulk-jobs-create HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Authorization: Bearer {token}\r\n".encode()
            + b"Transfer-Encoding: chunked\r\n\r\n"
        )
        try:
            for _ in range(SMALL_BODY_LIMIT // len(chunk) + 2):
                sock.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
        except OSError:
            pass  # the server answered and closed while we were still sending
        head = sock.recv(65536)
    assert head.startswith(b"HTTP/1.1 413"), head[:200]
    body = json.loads(head.split(b"\r\n\r\n", 1)[1])
    assert body["error"] == {
        "code": "payload_too_large",
        "message": f"request body is larger than {SMALL_BODY_LIMIT} bytes",
        "details": {"max_bytes": SMALL_BODY_LIMIT},
    }


def test_body_under_the_limit_is_not_413(small_client: httpx.Client) -> None:
    response = small_client.post("/api/bulk-jobs-create", json={**VALID, "entity_type": "spaceships"})
    assert error(response, 422)["code"] == "invalid_request"
