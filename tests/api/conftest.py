"""A real uvicorn server per record-store backend, on a free port, and clients with real tokens."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import dagster as dg
import httpx
import pytest
import uvicorn

from connectors.store import RecordStore
from pipelines.api.app import create_app
from pipelines.api.tokens import create_token

SMALL_BODY_LIMIT = 64 * 1024


@dataclass
class Server:
    url: str
    server: uvicorn.Server
    thread: threading.Thread


def _serve(app: Any) -> Server:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    # keep-alive well past a poll's gap on a loaded machine: at uvicorn's 5 s a client's next request
    # can race the server closing the idle connection ("connection reset by peer")
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on", timeout_keep_alive=120))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True, name=f"api-{port}")
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the API server did not start")
        time.sleep(0.02)
    return Server(url=f"http://127.0.0.1:{port}", server=server, thread=thread)


@pytest.fixture(scope="session")
def api_instance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dg.DagsterInstance]:
    """The Dagster instance the API servers submit runs to (shared: runs are told apart by id)."""
    home = tmp_path_factory.mktemp("api-dagster")
    with dg.instance_for_test(temp_dir=str(home)) as inst:
        yield inst


@pytest.fixture(scope="session")
def api_servers(api_instance: dg.DagsterInstance) -> Iterator[Callable[..., str]]:
    """Starts (once per store URL and body limit) an API server and returns its base URL."""
    servers: dict[tuple[str, int | None], Server] = {}

    def get(database_url: str, max_body_bytes: int | None = None) -> str:
        key = (database_url, max_body_bytes)
        if key not in servers:
            app = create_app(database_url, instance=api_instance, max_body_bytes=max_body_bytes)
            servers[key] = _serve(app)
        return servers[key].url

    yield get
    for handle in servers.values():
        handle.server.should_exit = True
    for handle in servers.values():
        handle.thread.join(timeout=10)


@pytest.fixture
def base_url(api_servers: Callable[..., str], store_url: str) -> str:
    return api_servers(store_url)


@pytest.fixture
def small_limit_url(api_servers: Callable[..., str], store_url: str) -> str:
    return api_servers(store_url, SMALL_BODY_LIMIT)


@pytest.fixture
def token(store: RecordStore, account: uuid.UUID) -> str:
    return create_token(store, account, name="tests").token


@pytest.fixture
def client(base_url: str, token: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=120) as c:
        yield c


@pytest.fixture
def anonymous(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, timeout=60) as c:
        yield c


@pytest.fixture
def other_client(base_url: str, store: RecordStore) -> Iterator[httpx.Client]:
    """A client of a second, unrelated account."""
    other = store.ensure_account(f"t-{uuid.uuid4().hex[:10]}")
    secret = create_token(store, other, name="other").token
    with httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {secret}"}, timeout=60) as c:
        yield c
