"""CPU seconds of a first (or all-updates) applications import, two source trees alternating (PostgreSQL).

    .venv/bin/python benchmarks/bench_import_cpu.py --rows 200000 \\
        --tree base=/work/wt-base --tree new=/work/wt-new --order base,new,base,new

`--updates`: each tree first imports the file once into an account of its own (not measured),
then each of its runs imports, into that account, the file whose every application differs
from what the account holds (stage and data): the bench's changed file, then the original
again, and so on (`bench_import.generate(changed=True)`), so every run is an all-updates import.

On a machine other work shares, wall seconds move by a third between identical runs; the CPU
the import costs moves much less. Each import runs in a child process with PYTHONPATH set to
its tree, into an account of its own on one throwaway database (made with the migrations of
the tree this script is run from), and reports the CPU seconds of its PostgreSQL backend
(`/proc/<pid>/stat` of each connection it opened, `pg_backend_pid()` at connect; PostgreSQL
must run on this machine), of the importing process, and of two writer steps on the backend:
`load` (the batch into the staging table) and `jobs` (finding or creating the applications'
jobs), plus `match` (matching the rows to their records) and `update` (updating them). The file is the bench's (`bench_import.generate`). Prints one JSON line per import;
nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import sqlalchemy as sa

TICK = os.sysconf("SC_CLK_TCK")


def cpu(pid: int) -> float:
    """CPU seconds (user + system) of process PID so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def child(url: str, path: str, batch: int, account_name: str | None = None) -> dict:
    """One import of PATH into a new account (or ACCOUNT_NAME's, forced); its CPU seconds."""
    from connectors.store import RecordStore
    from connectors.store.importing.writer import ImportWriter
    from pipelines.imports.engine import ImportOptions, run_import

    store = RecordStore(url)
    account = store.ensure_account(account_name or f"cpu-{uuid.uuid4().hex[:8]}")
    store.engine.dispose()
    backends: dict[int, float] = {}

    @sa.event.listens_for(store.engine, "connect")
    def opened(dbapi, record) -> None:  # type: ignore[no-untyped-def]
        backends[dbapi.info.backend_pid] = cpu(dbapi.info.backend_pid)

    steps = {"load": 0.0, "jobs": 0.0, "match": 0.0, "update": 0.0}

    def timed(name: str, step):  # type: ignore[no-untyped-def]
        def run(self, *args):  # type: ignore[no-untyped-def]
            pid = self.conn.connection.dbapi_connection.info.backend_pid
            before = cpu(pid)
            try:
                return step(self, *args)
            finally:
                steps[name] += cpu(pid) - before

        return run

    ImportWriter.load = timed("load", ImportWriter.load)
    ImportWriter._resolve_jobs = timed("jobs", ImportWriter._resolve_jobs)
    ImportWriter._match = timed("match", ImportWriter._match)
    ImportWriter._update = timed("update", ImportWriter._update)
    load_before = os.getloadavg()[0]
    own = resource.getrusage(resource.RUSAGE_SELF)
    t = time.perf_counter()
    r = run_import(
        store,
        account,
        path,
        ImportOptions(batch_size=batch, force=bool(account_name)),
        failed_rows_dir=tempfile.gettempdir(),
    )
    wall = time.perf_counter() - t
    own_after = resource.getrusage(resource.RUSAGE_SELF)
    backend = sum(cpu(p) - c for p, c in backends.items() if Path(f"/proc/{p}/stat").exists())
    store.dispose()
    return {
        "backend_cpu": round(backend, 2),
        "load_cpu": round(steps["load"], 2),
        "jobs_cpu": round(steps["jobs"], 2),
        "match_cpu": round(steps["match"], 2),
        "update_cpu": round(steps["update"], 2),
        "client_cpu": round(own_after.ru_utime + own_after.ru_stime - own.ru_utime - own.ru_stime, 2),
        "wall": round(wall, 1),
        "load_avg": [round(load_before, 1), round(os.getloadavg()[0], 1)],
        "counts": [r.created, r.updated, r.skipped, r.errors],
        "jobs_created": r.details.get("jobs_created"),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--batch-size", type=int, default=20_000)
    ap.add_argument("--tree", action="append", default=[], help="NAME=PATH of a source tree (repeat)")
    ap.add_argument("--order", default="", help="tree names in run order, e.g. base,new,base,new")
    ap.add_argument("--workdir", default=tempfile.gettempdir())
    ap.add_argument("--updates", action="store_true", help="all-updates imports instead of first imports")
    ap.add_argument("--child", nargs=2, metavar=("URL", "FILE"), help=argparse.SUPPRESS)
    ap.add_argument("--account", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        # the tree under test comes from PYTHONPATH alone
        print(json.dumps(child(*args.child, args.batch_size, args.account)))
        return
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from benchmarks.bench_import import ADMIN, generate
    from connectors.store import make_engine, migrate

    trees = dict(t.split("=", 1) for t in args.tree)
    path = Path(args.workdir) / f"applications_{args.rows}.csv"
    changed = Path(args.workdir) / f"applications_{args.rows}_changed.csv"
    for p, c in ((path, False), (changed, True)):
        if not p.exists() and (args.updates or not c):
            generate(p, args.rows, changed=c)
    name = f"bench_cpu_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(ADMIN.replace("postgresql://", "postgresql+psycopg://"), isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = sa.make_url(admin.url).set(database=name).render_as_string(hide_password=False)
    try:
        engine = make_engine(url)
        migrate.upgrade(engine)
        engine.dispose()

        def run(tree: str, file: Path, account: str | None) -> str:
            env = {**os.environ, "PYTHONPATH": trees[tree]}
            cmd = [sys.executable, __file__, "--batch-size", str(args.batch_size), "--child", url, str(file)]
            cmd += ["--account", account] if account else []
            out = subprocess.run(cmd, env=env, cwd=trees[tree], capture_output=True, text=True, check=False)
            return out.stdout.strip().splitlines()[-1] if out.returncode == 0 else out.stderr[-2000:]

        order = args.order.split(",")
        # --updates: the file each tree's account differs from in every application
        nxt: dict[str, Path] = {}
        if args.updates:
            for tree in dict.fromkeys(order):
                print(tree, "setup", run(tree, path, f"cpu-{tree}"), flush=True)
                nxt[tree] = changed
        for tree in order:
            if args.updates:
                file = nxt[tree]
                nxt[tree] = path if file == changed else changed
                print(tree, file.name, run(tree, file, f"cpu-{tree}"), flush=True)
            else:
                print(tree, run(tree, path, None), flush=True)
    finally:
        with admin.connect() as c:
            c.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


if __name__ == "__main__":
    main()
