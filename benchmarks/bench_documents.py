"""Resume import benchmark: drop N generated resume PDFs, time until every applicant has its skills.

    .venv/bin/python benchmarks/bench_documents.py --count 200            # bulkops vs pdfplumber
    .venv/bin/python benchmarks/bench_documents.py --count 2000 --no-baseline   # peak memory at 2,000
    .venv/bin/python benchmarks/bench_documents.py --count 2000 --no-baseline --launched  # as a user runs it

Generates N resume PDFs (about 1.9 pages each, a mix of skills), drops them into a fresh drop
folder and measures, in one process as a run worker would be:

- bulkops end to end: the resumes drop-folder sensor's tick, then the one `document_import_job`
  run it requests (pypdfium2 text in worker processes on every core, parsing, skills matching,
  the applicants through the import writer, documents and skills stored), until all N applicants
  exist with their skills (checked in the database);
- the baseline: single-process pdfplumber `extract_text` of the same files, and nothing else.

Then it checks that the skills bulkops stored for each applicant are the ones the same matcher
finds in pdfplumber's text. Peak memory: the benchmark process (sensor + run) and the largest
document worker, from getrusage. The record store is a throwaway SQLite file (`--db` for another).
Prints figures; nothing is asserted.

`--launched` runs it as a user gets it: a throwaway Dagster instance (SQLite, in its own
DAGSTER_HOME), the sensor's tick, and each run it requests launched through Dagster's default run
launcher (`pipelines.runs.launch_run`: `dagster job launch`, a code server, a run worker process per
run), so nothing of the run lives in this process. A sampler reads /proc every 50 ms: each run
worker's own peak (VmHWM), the peak of its process tree (the run worker and its document workers,
VmRSS summed) and each document worker's own peak (VmHWM).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import resource
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import dagster as dg
import sqlalchemy as sa

from connectors.store import RecordStore, make_engine, migrate, schema
from tests.documents import pdfgen

SKILLS = [
    "Python", "SQL", "Docker", "Kubernetes", "JavaScript", "TypeScript", "React", "Node.js", "C++", "C#",
    ".NET", "Java", "Go", "Terraform", "AWS", "PostgreSQL", "MongoDB", "Redis", "Apache Kafka", "Spark",
    "Excel", "Tableau", "Git", "Linux", "Scala", "Rust", "Django", "GraphQL", "Jenkins", "Ansible",
]  # fmt: skip


WORKER_PEAK_MIB = 0.0


def generate(folder: Path, n: int, seed: int = 7) -> int:
    rnd = random.Random(seed)
    pages = 0
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        p = 1 if rnd.random() < 0.12 else 2
        pages += p
        pdfgen.write(
            folder / f"resume-{i:05d}.pdf", pdfgen.resume_pdf(i, rnd.sample(SKILLS, rnd.randint(3, 9)), pages=p)
        )
    return pages


def pdfplumber_baseline(files: list[Path]) -> tuple[float, dict[str, set[str]]]:
    import pdfplumber

    from connectors.documents import resume, skills

    t0 = time.perf_counter()
    texts = {}
    for f in files:
        with pdfplumber.open(f) as pdf:
            texts[f.name] = [page.extract_text() or "" for page in pdf.pages]
    elapsed = time.perf_counter() - t0
    m = skills.matcher()
    found = {}
    for pages in texts.values():
        email = resume.parse("\n".join(pages)).email
        found[email] = {s.skill for s in m.find(pages)}
    return elapsed, found


def bulkops_run(
    drop_root: Path, db_url: str, n: int, workers: int, *, launched: bool = False, per_run: int = 1000
) -> tuple[float, float, dict[str, set[str]], str]:
    from pipelines.documents.assets import document_import_job
    from pipelines.documents.sensors import build_document_sensor
    from resources import RecordStoreResource

    store = RecordStore(db_url)
    account = f"bench-{uuid.uuid4().hex[:8]}"
    acct = store.ensure_account(account)
    os.environ["BULKOPS_ACCOUNT"] = account
    staged = drop_root / "staged"
    folder = drop_root / "resumes"
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as home, _instance(home, launched) as instance:
        sensor = build_document_sensor(
            "resume", clock=lambda: time.time() + 60, settle_seconds=10, root=drop_root, max_documents=per_run
        )
        t0 = time.perf_counter()
        for f in sorted(staged.iterdir()):
            os.replace(f, folder / f.name)
        # a second connection watches the database: the moment all N applicants have their skills
        done_at: list[float] = []
        stop = threading.Event()

        def watch() -> None:
            cs = schema.candidate_skills
            q = sa.select(sa.func.count(sa.distinct(cs.c.candidate_id))).where(cs.c.account_id == acct)
            while not stop.is_set():
                with store.engine.connect() as c:
                    if c.execute(q).scalar() >= n:
                        done_at.append(time.perf_counter())
                        return
                stop.wait(0.05)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        cursor = None
        runs = 0
        phases: list[str] = []
        launched_ids: list[tuple[str, float]] = []
        tick0_s: float | None = None
        sampler = Sampler(instance) if launched else None
        while True:
            # a tick sends at most 1,000 documents into one run; the next tick takes the rest
            tick = sensor(dg.build_sensor_context(instance=instance, cursor=cursor))
            if tick0_s is None:
                tick0_s = time.perf_counter() - t0
            cursor = tick.cursor
            if not tick.run_requests:
                break
            [request] = tick.run_requests
            run_config = dict(request.run_config)
            run_config["ops"]["import_documents"]["config"]["workers"] = workers
            t_launch = time.time()
            if sampler is not None:
                from pipelines import runs as dagster_runs

                # as the daemon launches a sensor's request: its run key and sensor in the tags
                run_config["resources"] = {"record_store": {"config": {"database_url": db_url}}}
                tags = {**request.tags, "dagster/run_key": request.run_key, "dagster/sensor_name": sensor.name}
                run_id = dagster_runs.launch_run(
                    document_import_job.name, run_config=run_config, tags=tags, instance=instance
                )
                launched_ids.append((run_id, t_launch))
                sampler.watch(run_id)
                continue
            result = document_import_job.execute_in_process(
                run_config=run_config,
                instance=instance,
                resources={"record_store": RecordStoreResource(database_url=db_url)},
            )
            assert result.success
            runs += 1
            phases.append(_run_phases(instance, result.run_id, t_launch))
        if sampler is not None:
            from pipelines import runs as dagster_runs

            for run_id, t_launch in launched_ids:
                status = dagster_runs.wait_for_run(run_id, instance=instance, timeout=3600)
                assert status == dg.DagsterRunStatus.SUCCESS, f"run {run_id}: {status}"
                runs += 1
                phases.append(_run_phases(instance, run_id, t_launch))
            sampler.stop()
        run_s = time.perf_counter() - t0
        watcher.join(30)
        stop.set()
        u, cs, sk = schema.users, schema.candidate_skills, schema.skills
        with store.engine.connect() as c:
            have = c.execute(
                sa.select(sa.func.count(sa.distinct(cs.c.candidate_id))).where(cs.c.account_id == acct)
            ).scalar()
            users = c.execute(sa.select(sa.func.count()).select_from(u).where(u.c.account_id == acct)).scalar()
        elapsed = (done_at[0] if done_at else time.perf_counter()) - t0
        if have != n or users != n:
            print(f"!! {users} applicants, {have} with skills, of {n}")
        found: dict[str, set[str]] = {}
        with store.engine.connect() as c:
            rows = c.execute(
                sa.select(u.c.email, sk.c.name)
                .join(cs, cs.c.candidate_id == u.c.id)
                .join(sk, sk.c.id == cs.c.skill_id)
                .where(u.c.account_id == acct)
            )
            for email, name in rows:
                found.setdefault(email, set()).add(name)
            docs = c.execute(
                sa.select(sa.func.count()).select_from(schema.documents).where(schema.documents.c.account_id == acct)
            ).scalar()
            h = schema.import_history
            details = [
                (d or {}).get("documents", {})
                for d in c.execute(sa.select(h.c.details).where(h.c.account_id == acct)).scalars()
            ]
        global WORKER_PEAK_MIB
        WORKER_PEAK_MIB = max((d.get("worker_peak_mib", 0) for d in details), default=0)
        for d in details:
            print(f"import timings: {d.get('timings')}")
        print(f"first tick {tick0_s:.2f} s after the drop")
        for p in phases:
            print(f"run: {p}")
        if sampler is not None:
            sampler.report()
    store.dispose()
    return elapsed, run_s, found, f"{users} applicants, {docs} documents, {runs} run(s)"


@contextlib.contextmanager
def _instance(home: str, launched: bool) -> Iterator[dg.DagsterInstance]:
    """A throwaway instance: in this process, or at HOME (DAGSTER_HOME) for launched runs."""
    if not launched:
        with dg.instance_for_test(temp_dir=home) as instance:
            yield instance
        return
    Path(home, "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    os.environ["DAGSTER_HOME"] = home
    os.environ.pop("BULKOPS_DAGSTER_GRAPHQL_URL", None)
    with dg.DagsterInstance.from_config(home) as instance:
        yield instance


def _status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of PID, KiB (empty when it is gone)."""
    out = {}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(("VmRSS:", "VmHWM:")):
                out[line[:5]] = int(line.split()[1])
    return out


def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            stat = Path(f"/proc/{entry.name}/stat").read_text()
            ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
            kids.setdefault(ppid, []).append(int(entry.name))
    return kids


def _cmdline(pid: int) -> str:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    return ""


class Sampler:
    """Peak memory of launched runs' process trees, from /proc every 50 ms (a thread of this process).

    The run worker is found by the process tag the run writes at its step's start (pipelines.instance);
    its tree is the run worker and its descendants (the document workers)."""

    def __init__(self, instance: dg.DagsterInstance) -> None:
        from pipelines.instance import PROCESS_TAG

        self.instance, self.tag = instance, PROCESS_TAG
        self.runs: dict[str, dict[str, float]] = {}
        # each run worker's VmRSS over time: (time.time(), KiB)
        self.rss: dict[str, list[tuple[float, int]]] = {}
        self.pids: dict[str, int] = {}
        self.doc_workers: dict[int, int] = {}  # pid -> VmHWM KiB
        self.together = 0  # largest sum of all runs' trees at one moment, KiB
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def watch(self, run_id: str) -> None:
        with self.lock:
            self.runs[run_id] = {"worker_hwm": 0, "tree": 0, "server_hwm": 0}

    def _find(self) -> None:
        for run_id in [r for r in self.runs if r not in self.pids]:
            run = self.instance.get_run_by_id(run_id)
            tag = (run.tags.get(self.tag) if run else None) or ""
            if tag:
                self.pids[run_id] = int(tag.partition("@")[0].split(",")[0].split(":")[1])

    def _loop(self) -> None:
        last_find = 0.0
        while not self.done.is_set():
            with self.lock:
                if time.monotonic() - last_find > 0.25 and len(self.pids) < len(self.runs):
                    last_find = time.monotonic()
                    self._find()
                kids = _children() if self.pids else {}
                together = 0
                for run_id, pid in self.pids.items():
                    figures = self.runs[run_id]
                    own = _status(pid)
                    if not own:
                        continue
                    figures["worker_hwm"] = max(figures["worker_hwm"], own.get("VmHWM", 0))
                    self.rss.setdefault(run_id, []).append((time.time(), own.get("VmRSS", 0)))
                    parent = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
                    figures["server_hwm"] = max(figures["server_hwm"], _status(parent).get("VmHWM", 0))
                    tree, stack = own.get("VmRSS", 0), list(kids.get(pid, []))
                    while stack:
                        child = stack.pop()
                        stack.extend(kids.get(child, []))
                        st = _status(child)
                        tree += st.get("VmRSS", 0)
                        if "connectors.documents.worker" in _cmdline(child):
                            self.doc_workers[child] = max(self.doc_workers.get(child, 0), st.get("VmHWM", 0))
                    figures["tree"] = max(figures["tree"], tree)
                    together += tree
                self.together = max(self.together, together)
            self.done.wait(0.05)

    def stop(self) -> None:
        self.done.set()
        self.thread.join(10)

    def report(self) -> None:
        for run_id, f in self.runs.items():
            print(
                f"launched run {run_id[:8]}: run worker peak (VmHWM) {f['worker_hwm'] / 1024:.0f} MiB; "
                f"run worker + document workers (sampled VmRSS sum) {f['tree'] / 1024:.0f} MiB; "
                f"its code server (VmHWM) {f['server_hwm'] / 1024:.0f} MiB"
            )
        for run_id, samples in self.rss.items():
            # the run worker's resident memory before and during its per-document events
            T = dg.DagsterEventType
            stamps = [
                e.timestamp
                for e in self.instance.all_logs(
                    run_id, of_type={T.ASSET_MATERIALIZATION, T.ASSET_OBSERVATION, T.STEP_SUCCESS}
                )
            ]
            if len(stamps) < 2:
                continue
            before = [kib for t, kib in samples if t < stamps[0]]
            during = [kib for t, kib in samples if stamps[0] <= t <= stamps[-1]]
            if before and during:
                print(
                    f"launched run {run_id[:8]}: run worker VmRSS, largest before its first document event "
                    f"{max(before) / 1024:.0f} MiB, at that event {before[-1] / 1024:.0f} MiB; during its "
                    f"{len(stamps) - 1} document events: first {during[0] / 1024:.0f}, largest "
                    f"{max(during) / 1024:.0f}, last {during[-1] / 1024:.0f} MiB"
                )
        workers = sorted(self.doc_workers.values())
        if workers:
            print(
                f"document workers: {len(workers)}, peak (VmHWM) largest {workers[-1] / 1024:.0f} MiB, "
                f"median {workers[len(workers) // 2] / 1024:.0f} MiB"
            )
        print(f"all launched runs' trees at one moment, largest: {self.together / 1024:.0f} MiB")
        print(
            "launched: " + json.dumps({r[:8]: {k: round(v / 1024) for k, v in f.items()} for r, f in self.runs.items()})
        )


def _run_phases(instance: dg.DagsterInstance, run_id: str, t_launch: float) -> str:
    """Seconds from the launch to the step's start, in the step, and in the events after the import."""
    logs = instance.all_logs(run_id)
    first = {}
    for e in logs:
        first.setdefault(e.dagster_event_type, e.timestamp) if e.dagster_event_type else None
    T = dg.DagsterEventType
    start = first.get(T.STEP_START, t_launch)
    asset = first.get(T.ASSET_MATERIALIZATION) or first.get(T.ASSET_OBSERVATION) or start
    end = first.get(T.RUN_SUCCESS) or first.get(T.RUN_FAILURE) or logs[-1].timestamp
    events = sum(1 for e in logs if e.dagster_event_type in (T.ASSET_MATERIALIZATION, T.ASSET_OBSERVATION))
    return (
        f"launch -> step start {start - t_launch:.2f} s; step start -> first document event {asset - start:.2f} s; "
        f"{events} document events and the run's end {end - asset:.2f} s"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=200)
    ap.add_argument("--no-baseline", action="store_true")
    ap.add_argument("--workers", type=int, default=0, help="document workers (0: one per core)")
    ap.add_argument("--db", default=None, help="record store URL (default: a throwaway SQLite file)")
    ap.add_argument(
        "--launched",
        action="store_true",
        help="launch the sensor's runs through Dagster's run launcher (a run worker process each) and "
        "measure the run workers' memory, instead of executing them in this process",
    )
    ap.add_argument("--per-run", type=int, default=1000, help="documents a sensor tick sends into one run")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        os.environ["BULKOPS_VAR_DIR"] = str(tmp_path / "var")
        os.environ["BULKOPS_DOCUMENTS_DIR"] = str(tmp_path / "var" / "documents")
        db_url = args.db or f"sqlite:///{tmp_path / 'bench.db'}"
        engine = make_engine(db_url)
        migrate.upgrade(engine)
        engine.dispose()
        t = time.perf_counter()
        pages = generate(tmp_path / "drop" / "staged", args.count)
        files = sorted((tmp_path / "drop" / "staged").iterdir())
        print(f"{args.count} resume PDFs, {pages} pages, generated in {time.perf_counter() - t:.1f} s")
        print(f"load average before: {os.getloadavg()[0]:.2f} (cores: {os.cpu_count()})")
        # the machine may be shared: the baseline runs before and after bulkops, each with its load average
        keep = tmp_path / "baseline"
        keep.mkdir()
        for f in files:
            os.link(f, keep / f.name)
        base_s, base_found = (None, None) if args.no_baseline else pdfplumber_baseline(files)
        if base_s is not None:
            print(
                f"pdfplumber extract_text, one process: {base_s:.1f} s ({pages / base_s:.1f} pages/s); "
                f"load {os.getloadavg()[0]:.2f}"
            )
        wall, run_s, found, what = bulkops_run(
            tmp_path / "drop", db_url, args.count, args.workers, launched=args.launched, per_run=args.per_run
        )
        print(f"bulkops drop -> all applicants with skills: {wall:.2f} s ({pages / wall:.0f} pages/s; {what})")
        print(
            f"bulkops drop -> run finished (one event per document partition logged): {run_s:.2f} s; "
            f"load {os.getloadavg()[0]:.2f}"
        )
        if base_s is not None:
            after_s, _ = pdfplumber_baseline(sorted(keep.iterdir()))
            print(f"pdfplumber extract_text again, after: {after_s:.1f} s; load {os.getloadavg()[0]:.2f}")
            mean = (base_s + after_s) / 2
            print(
                f"speed-up against the mean of both baselines ({mean:.1f} s): {mean / wall:.1f}x to all applicants "
                f"with skills, {mean / run_s:.1f}x to the run's end (before/after: {base_s / wall:.1f}x/"
                f"{after_s / wall:.1f}x)"
            )
            same = sum(1 for e, s in base_found.items() if found.get(e, set()) == s)
            print(f"same skills as from pdfplumber's text: {same} of {len(base_found)} applicants")
        me = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(
            f"peak RSS: benchmark process ({'sensor' if args.launched else 'sensor + run'}) {me:.0f} MiB; "
            f"largest document worker {WORKER_PEAK_MIB:.0f} MiB (its own VmHWM, after exec)"
        )
        print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
