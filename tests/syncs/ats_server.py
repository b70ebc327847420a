"""A local HTTP server answering like the Greenhouse Harvest and Lever APIs (shapes from their
public documentation), with pagination and injectable faults: 429 with Retry-After, 500, and a
connection dropped without an answer."""

from __future__ import annotations

import base64
import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

TOKEN = "gh-secret-token-123"


class State:
    def __init__(self) -> None:
        self.candidates: list[dict] = []
        self.opportunities: list[dict] = []
        self.faults: list[str] = []  # consumed one per request: "429", "500", "drop"
        self.requests: list[str] = []
        # writes received: (method, path, Idempotency-Key, JSON body)
        self.received: list[tuple[str, str, str | None, object]] = []
        self.lock = threading.Lock()


def greenhouse_candidate(i: int, updated_at: str, stage: str = "Phone Screen", apps: int = 1) -> dict:
    return {
        "id": 1000 + i,
        "first_name": f"Grace{i}",
        "last_name": f"Hopper{i}",
        "updated_at": updated_at,
        "email_addresses": [{"value": f"grace{i}@example.com", "type": "personal"}],
        "phone_numbers": [{"value": "+1 555 0100", "type": "mobile"}],
        "applications": [
            {
                "id": 50000 + i * 10 + a,
                "candidate_id": 1000 + i,
                "applied_at": "2026-01-02T03:04:05.000Z",
                "status": "active",
                "current_stage": {"id": 7, "name": stage},
                "jobs": [{"id": 300 + a, "name": f"Engineer {a}"}],
            }
            for a in range(apps)
        ],
    }


def lever_opportunity(i: int, updated_ms: int, stage: str = "Interview") -> dict:
    return {
        "id": f"opp-{i:04d}",
        "name": f"Ada Lovelace{i}",
        "emails": [f"ada{i}@example.com"],
        "phones": [{"type": "mobile", "value": "+44 20 7946 0000"}],
        "stage": {"id": "s-1", "text": stage},
        "sources": ["LinkedIn"],
        "applications": [{"id": f"app-{i}", "posting": f"post-{i % 2}"}],
        "createdAt": 1767225600000,
        "updatedAt": updated_ms,
    }


def _handler(state: State) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def _send(self, code: int, body: object, headers: dict | None = None) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            url = urlparse(self.path)
            q = {k: v[-1] for k, v in parse_qs(url.query).items()}
            with state.lock:
                state.requests.append(self.path)
                fault = state.faults.pop(0) if state.faults else None
            if fault == "drop":
                self.connection.shutdown(socket.SHUT_RDWR)
                self.close_connection = True
                return
            if fault == "429":
                return self._send(429, {"message": "rate limited"}, {"Retry-After": "7"})
            if fault == "500":
                return self._send(500, {"message": "boom"})
            auth = self.headers.get("Authorization", "")
            expected = "Basic " + base64.b64encode(f"{TOKEN}:".encode()).decode()
            if auth != expected:
                return self._send(401, {"message": "Invalid Basic Auth credentials"})
            if url.path == "/v1/candidates":
                # Greenhouse: per_page/page, Link header, updated_after filter
                rows = [
                    c for c in state.candidates if "updated_after" not in q or c["updated_at"] >= q["updated_after"]
                ]
                per_page, page = int(q.get("per_page", 100)), int(q.get("page", 1))
                chunk = rows[(page - 1) * per_page : page * per_page]
                headers = {}
                if page * per_page < len(rows):
                    nxt = f"http://{self.headers['Host']}/v1/candidates?per_page={per_page}&page={page + 1}"
                    if "updated_after" in q:
                        nxt += f"&updated_after={q['updated_after']}"
                    headers["Link"] = f'<{nxt}>; rel="next"'
                return self._send(200, chunk, headers)
            if url.path == "/v1/opportunities":
                # Lever: limit/offset token, {"data", "hasNext", "next"}, updated_at_start filter
                rows = [o for o in state.opportunities if o["updatedAt"] >= int(q.get("updated_at_start", 0))]
                limit, offset = int(q.get("limit", 100)), int(q.get("offset", 0))
                chunk = rows[offset : offset + limit]
                more = offset + limit < len(rows)
                body = {"data": chunk, "hasNext": more}
                if more:
                    body["next"] = str(offset + limit)
                return self._send(200, body)
            return self._send(404, {"message": "not found"})

        def _write(self) -> None:
            # a sync out: JSON bodies POSTed, PUT or PATCHed to /v1/inbox[/<key>], kept once per Idempotency-Key
            length = int(self.headers.get("Content-Length", 0))
            body = json.loads(self.rfile.read(length) or b"null")
            with state.lock:
                state.requests.append(f"{self.command} {self.path}")
                fault = state.faults.pop(0) if state.faults else None
            if fault == "drop":
                self.connection.shutdown(socket.SHUT_RDWR)
                self.close_connection = True
                return
            if fault in ("429", "500"):
                return self._send(int(fault), {"message": "try later"}, {"Retry-After": "3"} if fault == "429" else {})
            expected = "Basic " + base64.b64encode(f"{TOKEN}:".encode()).decode()
            if self.headers.get("Authorization", "") != expected:
                return self._send(401, {"message": "Invalid Basic Auth credentials"})
            if not urlparse(self.path).path.startswith("/v1/inbox"):
                return self._send(404, {"message": "not found"})
            key = self.headers.get("Idempotency-Key")
            with state.lock:
                if key is None or all(r[2] != key for r in state.received):
                    state.received.append((self.command, self.path, key, body))
            if fault == "lost":
                # applied, but the answer never arrives: the client sends it again
                self.connection.shutdown(socket.SHUT_RDWR)
                self.close_connection = True
                return
            return self._send(201 if self.command == "POST" else 200, {"ok": True})

        do_POST = do_PUT = do_PATCH = _write

    return Handler


@contextmanager
def ats_server() -> Iterator[tuple[str, State]]:
    state = State()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1", state
    finally:
        server.shutdown()
        server.server_close()
