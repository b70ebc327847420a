"""Shared fixtures: a real SQLite file and a real PostgreSQL database per test session.

Tests isolate from each other by account (every path is account-scoped), so the migrated
databases are shared by the session and each test gets a fresh account.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from connectors.store import RecordStore, make_engine, migrate

# keep tests away from the developer's var/: every default path lands in a throwaway directory
os.environ["BULKOPS_VAR_DIR"] = tempfile.mkdtemp(prefix="bulkops-test-var-")
os.environ.pop("BULKOPS_DATABASE_URL", None)
os.environ.pop("DAGSTER_HOME", None)
# runs go to the instance a test names, never to a webserver the developer's shell points at
os.environ.pop("BULKOPS_DAGSTER_GRAPHQL_URL", None)

PG_ADMIN_URL = os.environ.get("BULKOPS_TEST_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


def _pg_admin() -> sa.Engine:
    engine = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect():
            pass
    except sa.exc.OperationalError as exc:
        # never skip: a missing server is a failure, CI starts it
        raise RuntimeError(
            f"PostgreSQL is required for the tests and is not reachable at {PG_ADMIN_URL}: {exc}"
        ) from exc
    return engine


@pytest.fixture(scope="session")
def pg_database_factory() -> Iterator:
    """Creates throwaway PostgreSQL databases and drops them all at the end of the session."""
    admin = _pg_admin()
    created: list[str] = []

    def create() -> str:
        name = f"bulkops_test_{uuid.uuid4().hex[:12]}"
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        created.append(name)
        return sa.make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)

    yield create
    with admin.connect() as conn:
        for name in created:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def pg_url(pg_database_factory) -> str:
    url = pg_database_factory()
    engine = make_engine(url)
    migrate.upgrade(engine)
    engine.dispose()
    return url


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('store') / 'bulkops.db'}"
    engine = make_engine(url)
    migrate.upgrade(engine)
    engine.dispose()
    return url


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest) -> str:
    """The URL of a migrated record store, once per backend."""
    return request.getfixturevalue("pg_url" if request.param == "postgresql" else "sqlite_url")


@pytest.fixture
def store(store_url: str) -> Iterator[RecordStore]:
    s = RecordStore(store_url)
    yield s
    s.dispose()


@pytest.fixture
def own_store_at() -> Iterator[Callable[[str], RecordStore]]:
    """Migrate the record store at a URL of the test's own and open it (disposed after the test).

    For tests whose numbers span every account (statistics), which the shared database would skew.
    """
    opened: list[RecordStore] = []

    def open_(url: str) -> RecordStore:
        engine = make_engine(url)
        migrate.upgrade(engine)
        engine.dispose()
        opened.append(RecordStore(url))
        return opened[-1]

    yield open_
    for s in opened:
        s.dispose()


@pytest.fixture
def account(store: RecordStore) -> uuid.UUID:
    """A fresh account: the test's private corner of the shared database."""
    return store.ensure_account(f"t-{uuid.uuid4().hex[:10]}")


@pytest.fixture
def instance(tmp_path: Path) -> Iterator[dg.DagsterInstance]:
    home = tmp_path / "dagster"
    home.mkdir()
    with dg.instance_for_test(temp_dir=str(home)) as inst:
        yield inst


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, store_url: str) -> Path:
    """Where a `bulkops` command runs: a private var/ (TMP_PATH/var) and Dagster home, the store under test, a fresh
    account as the default; returns TMP_PATH."""
    var = tmp_path / "var"
    monkeypatch.setenv("BULKOPS_VAR_DIR", str(var))
    monkeypatch.setenv("BULKOPS_DATABASE_URL", store_url)
    monkeypatch.setenv("DAGSTER_HOME", str(var / "dagster"))
    monkeypatch.setenv("BULKOPS_ACCOUNT", f"t-{uuid.uuid4().hex[:10]}")
    monkeypatch.delenv("BULKOPS_DEBUG", raising=False)
    store = RecordStore(store_url)
    try:
        store.ensure_account(os.environ["BULKOPS_ACCOUNT"])
    finally:
        store.dispose()
    return tmp_path


# The fast tier (`make test-fast`: `pytest -m "not slow"`) is the edit loop: under a minute on the 2-core
# machine, start-up included. A test is slow when a whole-suite run measured it at SLOW_SECONDS or more
# (setup, call and teardown; each parametrized case on its own): tests/slow_tests.txt lists those, written by
# `make slow-tests` (`pytest -n 2 --dist loadgroup --record-slow`). Re-record when the fast tier nears a
# minute or a slow test was added; until then a new slow test can carry `@pytest.mark.slow` itself.
SLOW_SECONDS = 0.5
SLOW_TESTS_FILE = Path(__file__).with_name("slow_tests.txt")


def _slow_test_seconds() -> dict[str, float]:
    """Seconds per node id listed in SLOW_TESTS_FILE (lines `<seconds>\t<node id>`; `#` starts a comment line)."""
    lines = SLOW_TESTS_FILE.read_text(encoding="utf-8").splitlines() if SLOW_TESTS_FILE.exists() else []
    pairs = (line.split("\t", 1) for line in lines if line.strip() and not line.startswith("#"))
    return {node: float(seconds) for seconds, node in pairs}


def _slow_tests() -> frozenset[str]:
    return frozenset(_slow_test_seconds())


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--record-slow",
        action="store_true",
        help=f"after a whole-suite run, rewrite tests/{SLOW_TESTS_FILE.name} with the tests that took "
        f"{SLOW_SECONDS} s or more",
    )


def pytest_configure(config: pytest.Config) -> None:
    # --dist loadgroup keeps a group's tests on one worker through a `@group` suffix on their node ids;
    # pytest 9.2's structured node ids drop it (pytest-xdist#1386, open in xdist 3.8): the groups would be
    # spread silently and every worker would start its own `dagster dev` for the `deployment` tests
    if config.getoption("dist", "no") == "loadgroup" and not hasattr(config, "workerinput"):
        from importlib.metadata import version

        pytest_version = tuple(int(p) for p in pytest.__version__.split(".")[:2] if p.isdigit())
        xdist_version = tuple(int(p) for p in version("pytest-xdist").split(".")[:2] if p.isdigit())
        if pytest_version >= (9, 2) and xdist_version <= (3, 8):
            raise pytest.UsageError(
                f"pytest {pytest.__version__} with pytest-xdist {version('pytest-xdist')} ignores xdist_group under "
                "--dist loadgroup (pytest-xdist#1386): install the versions pyproject.toml pins "
                "(pip install -e '.[dev]')"
            )
    # under xdist the controller receives every worker's reports: it alone records
    if config.getoption("record_slow") and not hasattr(config, "workerinput"):
        config.pluginmanager.register(SlowRecorder(config), "bulkops-slow-recorder")


@pytest.fixture(scope="session")
def deployment(pg_database_factory, tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    """One `dagster dev` (webserver + daemon) per session and worker, on a private Dagster home and a
    fresh PostgreSQL record store; its tests share a worker (`xdist_group("dagster_dev")`)."""
    from tests.dagster_deployment import run_deployment

    store_url = pg_database_factory()
    engine = make_engine(store_url)
    migrate.upgrade(engine)
    engine.dispose()
    with run_deployment(store_url, tmp_path_factory.mktemp("deployment")) as deployed:
        yield deployed


# whole modules of Dagster deployments, run workers in subprocesses and kill -9: slow whatever the recording says
SLOW_MODULES = frozenset(
    {
        "tests/api/test_jobs.py",
        "tests/bulk/test_dagster.py",
        "tests/imports/test_faults.py",
        "tests/test_devserver.py",
        "tests/test_queued_runs.py",
        "tests/test_runs.py",
    }
)


def _plain(nodeid: str) -> str:
    """NODEID without the `@group` suffix xdist's --dist loadgroup adds (before or after our hook runs)."""
    at = nodeid.rfind("@")
    return nodeid[:at] if at > nodeid.rfind("]") else nodeid


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    seconds = _slow_test_seconds()
    for item in items:
        if _plain(item.nodeid) in seconds or item.nodeid.split("::", 1)[0] in SLOW_MODULES:
            item.add_marker(pytest.mark.slow)
    # The longest modules first (by the seconds SLOW_TESTS_FILE measured), each module's tests kept
    # together and in their order: with two xdist workers a long module started last would leave
    # one worker idle at the end of the run. Every worker sorts the same collection the same way.
    module_seconds: dict[str, float] = {}
    for item in items:
        module = item.nodeid.split("::", 1)[0]
        module_seconds[module] = module_seconds.get(module, 0.0) + seconds.get(_plain(item.nodeid), 0.0)
    first_seen = {m: i for i, m in reversed(list(enumerate(it.nodeid.split("::", 1)[0] for it in items)))}
    items.sort(key=lambda it: (-module_seconds[m := it.nodeid.split("::", 1)[0]], first_seen[m]))


class SlowRecorder:
    """Sums each test's setup, call and teardown and writes SLOW_TESTS_FILE at the end of a whole-suite run."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.durations: dict[str, float] = {}

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        nodeid = _plain(report.nodeid)
        self.durations[nodeid] = self.durations.get(nodeid, 0.0) + report.duration

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        config = self.config
        whole = config.args_source is pytest.Config.ArgsSource.TESTPATHS and not (
            config.getoption("keyword") or config.getoption("markexpr")
        )
        if not whole or exitstatus != 0:
            reporter = config.pluginmanager.get_plugin("terminalreporter")
            reporter.ensure_newline()
            reporter.write_line(
                f"--record-slow needs a whole-suite run that passes (no paths, -k or -m): {SLOW_TESTS_FILE.name} "
                "is unchanged",
                red=True,
            )
            return
        slow = sorted((-s, n) for n, s in self.durations.items() if s >= SLOW_SECONDS)
        made_by = "(`make slow-tests`); tests/conftest.py marks them slow"
        header = [
            f"# {len(slow)} of {len(self.durations)} tests took {SLOW_SECONDS} s or more {made_by}",
            "# seconds<TAB>node id",
        ]
        lines = [f"{-s:.2f}\t{n}" for s, n in slow]
        SLOW_TESTS_FILE.write_text("\n".join(header + lines) + "\n", encoding="utf-8")


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:  # type: ignore[no-untyped-def]
    # make it visible in CI output that the PostgreSQL tests ran rather than skipped
    counts: dict[str, int] = {}
    for outcome in ("passed", "failed", "skipped", "error"):
        for report in terminalreporter.stats.get(outcome, []):
            if getattr(report, "when", "call") == "call" and "postgres" in getattr(report, "keywords", {}):
                counts[outcome] = counts.get(outcome, 0) + 1
    summary = ", ".join(f"{n} {k}" for k, n in counts.items()) or "none ran"
    terminalreporter.write_line(f"PostgreSQL ({PG_ADMIN_URL}): {summary}")


@pytest.fixture
def pg_cluster() -> Iterator:
    """A private PostgreSQL server of the test's own, which it may restart or stop (tests/pg_cluster.py)."""
    from tests.pg_cluster import pg_cluster as start

    with start() as cluster:
        yield cluster
