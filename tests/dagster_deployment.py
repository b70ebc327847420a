"""A real Dagster deployment for tests: `dagster dev` (webserver, daemon, code server) on a free port.

Started once per test session and xdist worker by the `deployment` fixture (tests/conftest.py), on a
private Dagster home with our local dagster.yaml and a fresh migrated PostgreSQL record store.
Tests that use it carry `pytest.mark.xdist_group("dagster_dev")` so they share one worker.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import httpx

ROOT = Path(__file__).resolve().parents[1]
READY = "{ workspaceOrError { ... on Workspace { locationEntries { name locationOrLoadError { __typename } } } } }"


@dataclass
class Deployment:
    url: str
    store_url: str
    home: Path
    env: dict[str, str]

    def instance(self) -> dg.DagsterInstance:
        return dg.DagsterInstance.from_config(str(self.home))

    def graphql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        """The data of a GraphQL operation on the deployment's webserver, as the UI sends it."""
        body = httpx.post(f"{self.url}/graphql", json={"query": query, "variables": variables or {}}, timeout=60).json()
        assert not body.get("errors"), body["errors"]
        return body["data"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_ready(url: str, proc: subprocess.Popen, log: Path, timeout: float = 240) -> None:
    """Poll the webserver until the bulkops code location is loaded (or the process dies)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"dagster dev exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            data = httpx.post(f"{url}/graphql", json={"query": READY}, timeout=5).json()["data"]["workspaceOrError"]
            kinds = {
                e["name"]: e["locationOrLoadError"] and e["locationOrLoadError"]["__typename"]
                for e in data["locationEntries"]
            }
            if kinds.get("bulkops") == "RepositoryLocation":
                return
            if kinds.get("bulkops") == "PythonError":
                raise RuntimeError(f"the code location failed to load:\n{log.read_text()[-3000:]}")
        except (httpx.HTTPError, KeyError, TypeError, ValueError):
            pass
        time.sleep(0.5)
    raise TimeoutError(f"dagster dev not ready after {timeout:.0f} s:\n{log.read_text()[-3000:]}")


@contextlib.contextmanager
def run_deployment(store_url: str, base: Path) -> Iterator[Deployment]:
    home = base / "dagster"
    home.mkdir()
    shutil.copy(ROOT / "pipelines" / "dagster.local.yaml", home / "dagster.yaml")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "BULKOPS_VAR_DIR": str(base / "var"),
        "BULKOPS_DATABASE_URL": store_url,
        "BULKOPS_DAGSTER_GRAPHQL_URL": url,
    }
    log = base / "dagster-dev.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "dagster", "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        _wait_ready(url, proc, log)
        yield Deployment(url=url, store_url=store_url, home=home, env=env)
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=30)
        # the webserver, daemon and code servers are the group's: none may outlive the session
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
