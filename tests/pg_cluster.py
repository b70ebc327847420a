"""A private PostgreSQL server for tests that stop or restart it: never the machine's shared server.

`pg_cluster()` runs `initdb` into a fresh directory (as the `postgres` OS user when the tests run as
root: initdb refuses root), starts it on a free port of 127.0.0.1 with its socket in that directory,
and on exit stops it (immediate mode) and deletes the directory. `restart()` is `pg_ctl restart -m
fast`: every session is terminated (57P01 admin_shutdown), then the server accepts connections again
before it returns.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from connectors.store import make_engine, migrate
from tests.dagster_deployment import free_port
from tests.faults import skip_unless

BIN_DIRS = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
OS_USER = "postgres"


def _bin(name: str) -> str | None:
    for d in BIN_DIRS:
        if (d / name).exists():
            return str(d / name)
    return shutil.which(name)


@dataclass
class Cluster:
    data: Path
    port: int
    log: Path
    _as: list[str]

    @property
    def admin_url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _ctl(self, *args: str) -> None:
        command = [*self._as, _bin("pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w", "-t", "120", *args]
        done = subprocess.run(command, check=False, capture_output=True, text=True, timeout=180)
        if done.returncode != 0:
            tail = self.log.read_text()[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"pg_ctl {' '.join(args)} failed: {done.stdout}{done.stderr}\n{tail}")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._ctl("-o", options, "start")

    def stop(self, mode: str = "fast") -> None:
        self._ctl("-m", mode, "stop")

    def restart(self) -> None:
        """Stop with every session terminated, start again (same port and options); returns once it accepts."""
        self._ctl("-m", "fast", "restart")

    def database(self, name: str = "bulkops") -> str:
        """A new database holding the migrated record store; its URL."""
        admin = sa.create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:
                conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        finally:
            admin.dispose()
        url = sa.make_url(self.admin_url).set(database=name).render_as_string(hide_password=False)
        engine = make_engine(url)
        try:
            migrate.upgrade(engine)
        finally:
            engine.dispose()
        return url


@contextlib.contextmanager
def pg_cluster() -> Iterator[Cluster]:
    initdb = _bin("initdb")
    skip_unless(initdb is not None and _bin("pg_ctl") is not None, "PostgreSQL's initdb and pg_ctl are not installed")
    run_as: list[str] = []
    base = Path(tempfile.mkdtemp(prefix="bulkops-pg-"))
    if os.geteuid() == 0:
        user = pwd.getpwnam(OS_USER)
        os.chown(base, user.pw_uid, user.pw_gid)
        run_as = ["runuser", "-u", OS_USER, "--"]
    cluster = Cluster(data=base / "data", port=free_port(), log=base / "server.log", _as=run_as)
    try:
        subprocess.run(
            [*run_as, initdb, "-D", str(cluster.data), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync"],
            check=True,
            capture_output=True,
            timeout=180,
        )
        cluster.start()
        yield cluster
    finally:
        with contextlib.suppress(RuntimeError, subprocess.SubprocessError, OSError):
            if (cluster.data / "postmaster.pid").exists():
                cluster.stop("immediate")
        shutil.rmtree(base, ignore_errors=True)
