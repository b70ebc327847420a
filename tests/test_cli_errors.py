"""The command line tells every expected error in one `error: ` line on stderr, with its exit code."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

import click
import pytest
import sqlalchemy as sa
from click.testing import CliRunner, Result

from connectors.store import RecordStore, schema
from pipelines.cli import EXIT_UNEXPECTED, BulkopsGroup, main

ROOT = Path(__file__).resolve().parents[1]
CSV = "Application ID,First Name,Last Name,Email,Job Code,Job Title\n" + "".join(
    f"E-{i},First{i},Last{i},e{i}@example.com,ENG-1,Engineer\n" for i in range(3)
)


@pytest.fixture
def store_url(sqlite_url: str) -> str:
    # the handler is the same whatever the backend; describe_error is tested on both in tests/store
    return sqlite_url


@pytest.fixture
def env(cli_env: Path) -> Path:
    return cli_env


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def assert_one_error_line(out: Result, code: int, *needles: str) -> None:
    assert out.exit_code == code, out.output
    assert "Traceback" not in out.output, out.output
    assert out.stderr.startswith("error: ") and out.stderr.count("\n") == 1, out.stderr
    for needle in needles:
        assert needle in out.stderr, out.stderr


def empty_file(tmp: Path) -> list[str]:
    (tmp / "empty.csv").write_bytes(b"")
    return ["import", str(tmp / "empty.csv")]


def binary_file(tmp: Path) -> list[str]:
    (tmp / "photo.csv").write_bytes(bytes(range(256)) * 40)
    return ["import", str(tmp / "photo.csv")]


def unknown_account(tmp: Path) -> list[str]:
    (tmp / "ok.csv").write_text(CSV)
    return ["import", str(tmp / "ok.csv"), "--account", "no-such-account"]


def missing_file(tmp: Path) -> list[str]:
    return ["import", str(tmp / "nowhere.csv")]


def bad_mapping(tmp: Path) -> list[str]:
    (tmp / "ok.csv").write_text(CSV)
    (tmp / "m.yaml").write_text("columns:\n  E-mail Address: email\n")
    return ["import", str(tmp / "ok.csv"), "--mapping", str(tmp / "m.yaml")]


CASES: dict[str, tuple[Callable[[Path], list[str]], int, tuple[str, ...]]] = {
    "empty file": (empty_file, 1, ("empty.csv", "empty")),
    "binary file": (binary_file, 1, ("photo.csv",)),
    "unknown account": (unknown_account, 1, ("no-such-account", "bulkops accounts create")),
    "missing file": (missing_file, 2, ("nowhere.csv", "bulkops import --help")),
    "mapping names a missing column": (bad_mapping, 1, ("E-mail Address",)),
    "malformed import id": (
        lambda _: ["imports", "rollback", "not-a-uuid"],
        2,
        ("IMPORT_ID", "not-a-uuid", "not a valid UUID"),
    ),
    "malformed import id to show": (lambda _: ["imports", "show", "12345"], 2, ("IMPORT_ID", "12345")),
    "malformed bulk job id": (lambda _: ["bulk-jobs", "get", "xyz"], 2, ("BULK_JOB_ID", "xyz")),
    "missing bulk job": (
        lambda _: ["bulk-jobs", "get", str(uuid.UUID(int=7))],
        1,
        ("no bulk job", str(uuid.UUID(int=7)), "bulk-jobs list"),
    ),
    "missing import": (lambda _: ["imports", "show", str(uuid.UUID(int=9))], 1, ("no import", "imports list")),
    "rollback of a missing import": (lambda _: ["imports", "rollback", str(uuid.UUID(int=9))], 1, ("no import",)),
    "params not json": (
        lambda _: ["bulk-jobs", "create", "applications", "status_update", "--params", "{status: x}"],
        2,
        ("--params", "not valid JSON"),
    ),
    "params not an object": (
        lambda _: ["bulk-jobs", "create", "applications", "status_update", "--params", "[1]"],
        2,
        ("--params", "JSON object"),
    ),
    "unknown option": (lambda _: ["imports", "list", "--colour"], 2, ("--colour",)),
    "unknown command": (lambda _: ["impotr"], 2, ("impotr",)),
    "revoking an unknown token": (lambda _: ["tokens", "revoke", "nope"], 1, ("no active token",)),
    "unknown schema revision": (
        lambda _: ["db", "upgrade", "--revision", "nope"],
        1,
        ("cannot migrate", "'nope'", "db current"),
    ),
    "demo of a missing file": (lambda tmp: ["demo", "--file", str(tmp / "gone.csv")], 1, ("no such file", "gone.csv")),
    "unknown bulk job entity": (lambda _: ["bulk-jobs", "create", "planets", "delete", "--ids", "-"], 1, ("planets",)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_an_expected_error_is_one_line_on_stderr_with_its_exit_code(case: str, env: Path) -> None:
    args, code, needles = CASES[case]
    out = CliRunner().invoke(main, args(env))
    assert_one_error_line(out, code, *needles)


def test_an_unreachable_record_store_is_named_without_a_traceback(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    port = closed_port()
    monkeypatch.setenv("BULKOPS_DATABASE_URL", f"postgresql://postgres@127.0.0.1:{port}/bulkops")

    out = CliRunner().invoke(main, ["imports", "list"])

    assert_one_error_line(out, 1, "cannot reach the record store", f"127.0.0.1:{port}", "BULKOPS_DATABASE_URL")
    assert "[SQL" not in out.stderr and "sqlalche.me" not in out.stderr


@pytest.mark.parametrize(
    ("url", "needles"),
    [
        pytest.param(
            "mysql://app:pw-9@127.0.0.1/hr", ("SQLite or PostgreSQL, not mysql", "mysql://app:***@"), id="mysql"
        ),
        pytest.param("not a url", ("not a database URL", "BULKOPS_DATABASE_URL"), id="garbage"),
    ],
)
def test_a_record_store_of_another_kind_is_named_with_what_to_use(
    env: Path, monkeypatch: pytest.MonkeyPatch, url: str, needles: tuple[str, ...]
) -> None:
    monkeypatch.setenv("BULKOPS_DATABASE_URL", url)

    out = CliRunner().invoke(main, ["imports", "list"])

    assert_one_error_line(out, 1, *needles)
    assert "pw-9" not in out.stderr


def test_a_record_store_behind_the_code_says_to_upgrade(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{env / 'blank.db'}"
    sa.create_engine(url).connect().close()
    monkeypatch.setenv("BULKOPS_DATABASE_URL", url)

    out = CliRunner().invoke(main, ["imports", "list"])

    assert_one_error_line(out, 1, "bulkops db upgrade")


def test_verbose_and_bulkops_debug_show_the_traceback(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    quiet = CliRunner().invoke(main, ["bulk-jobs", "get", str(uuid.UUID(int=7))])
    loud = CliRunner().invoke(main, ["-v", "bulk-jobs", "get", str(uuid.UUID(int=7))])
    monkeypatch.setenv("BULKOPS_DEBUG", "1")
    debug = CliRunner().invoke(main, ["bulk-jobs", "get", str(uuid.UUID(int=7))])

    assert "Traceback" not in quiet.stderr
    for out in (loud, debug):
        assert out.exit_code == 1
        assert "Traceback (most recent call last)" in out.stderr and "JobNotFound" in out.stderr
        assert out.stderr.splitlines()[-1].startswith("error: no bulk job")


@click.group(cls=BulkopsGroup)
def broken() -> None:
    """A group whose command fails in a way nobody expected."""


@broken.command("crash")
def crash() -> None:
    {}["missing"]


def test_an_unexpected_error_is_one_line_with_a_hint_and_its_own_exit_code(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BULKOPS_DEBUG", raising=False)
    out = CliRunner().invoke(broken, ["crash"])

    assert_one_error_line(out, EXIT_UNEXPECTED, "KeyError: 'missing'", "run with bulkops -v")

    monkeypatch.setenv("BULKOPS_DEBUG", "1")
    loud = CliRunner().invoke(broken, ["crash"])
    assert loud.exit_code == EXIT_UNEXPECTED and "Traceback" in loud.stderr


def test_version_comes_from_the_package_metadata() -> None:
    from importlib.metadata import version

    out = CliRunner().invoke(main, ["--version"])

    assert out.exit_code == 0 and out.output == f"bulkops {version('bulkops')}\n"


def test_help_says_what_the_product_does() -> None:
    texts = []

    def walk(cmd: click.Command, path: list[str]) -> None:
        texts.append(CliRunner().invoke(main, [*path, "--help"]).output)
        for name, sub in getattr(cmd, "commands", {}).items():
            walk(sub, [*path, name])

    walk(main, [])

    assert len(texts) > 20
    for text in texts:
        assert "seed 00" not in text.lower() and "the brief" not in text.lower(), text


def test_the_installed_command_prints_one_line_and_exits_2_on_a_bad_uuid(env: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", "from pipelines.cli import run; run()", "imports", "rollback", "0123-not-a-uuid"],
        cwd=ROOT,
        env=os.environ.copy(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: invalid value for 'IMPORT_ID'"), proc.stderr
    assert proc.stdout == ""


def test_the_installed_command_prints_one_line_for_an_empty_file(env: Path) -> None:
    (env / "empty.csv").write_bytes(b"")
    proc = subprocess.run(
        [sys.executable, "-c", "from pipelines.cli import run; run()", "import", str(env / "empty.csv")],
        cwd=ROOT,
        env=os.environ.copy(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith("error: import of empty.csv failed: the file is empty (dagster run ")
    store = RecordStore(os.environ["BULKOPS_DATABASE_URL"])
    h = schema.import_history
    with store.engine.connect() as conn:
        reason = conn.scalar(
            sa.select(h.c.error_message).where(h.c.account_id == store.account_id(os.environ["BULKOPS_ACCOUNT"]))
        )
    assert reason == "empty.csv: the file is empty"


def test_an_unreachable_dagster_webserver_is_named_without_the_query(
    env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = closed_port()
    monkeypatch.setenv("BULKOPS_DAGSTER_GRAPHQL_URL", f"http://127.0.0.1:{port}")
    (env / "ok.csv").write_text(CSV)

    out = CliRunner().invoke(main, ["import", str(env / "ok.csv"), "--submit", "--no-wait"])

    assert_one_error_line(
        out, 1, f"cannot reach the Dagster webserver at http://127.0.0.1:{port}", "BULKOPS_DAGSTER_GRAPHQL_URL"
    )
    assert "mutation" not in out.stderr and "variables" not in out.stderr
