"""A failed import says why, in words, in its history row, in `imports list`/`show` and in the run's metadata;
rejected rows turn into exit code 3 on request."""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from connectors.store import RecordStore, schema
from pipelines.cli import EXIT_REJECTED, main


@pytest.fixture
def env(cli_env: Path) -> Path:
    return cli_env


@pytest.fixture
def refusing_phone(store_url: str) -> Iterator[str]:
    """A database trigger that refuses a user whose phone is the returned value (the database's own refusal)."""
    token = f"refuse-{uuid.uuid4().hex[:8]}"
    name = token.replace("-", "_")
    engine = sa.create_engine(RecordStore(store_url).engine.url)
    with engine.begin() as conn:
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql(
                f"CREATE TRIGGER {name} BEFORE INSERT ON users WHEN NEW.phone = '{token}' "
                f"BEGIN SELECT RAISE(ABORT, 'phone {token} is refused by policy'); END"
            )
        else:
            conn.exec_driver_sql(
                f"CREATE FUNCTION {name}() RETURNS trigger AS $$ BEGIN IF NEW.phone = '{token}' THEN "
                f"RAISE EXCEPTION 'phone {token} is refused by policy'; END IF; RETURN NEW; END $$ LANGUAGE plpgsql"
            )
            conn.exec_driver_sql(f"CREATE TRIGGER {name} BEFORE INSERT ON users FOR EACH ROW EXECUTE FUNCTION {name}()")
    try:
        yield token
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"DROP TRIGGER {name}" + ("" if conn.dialect.name == "sqlite" else " ON users"))
            if conn.dialect.name != "sqlite":
                conn.exec_driver_sql(f"DROP FUNCTION {name}()")
        engine.dispose()


def history(store_url: str) -> list[sa.Row]:
    store = RecordStore(store_url)
    h = schema.import_history
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(h).where(h.c.account_id == store.account_id(os.environ["BULKOPS_ACCOUNT"]))).all()
    store.dispose()
    return list(rows)


def test_a_database_refusal_is_told_in_words_in_the_history_the_cli_and_the_run(
    env: Path, store_url: str, refusing_phone: str
) -> None:
    path = env / "people.csv"
    path.write_text(
        "First Name,Last Name,Email,Phone\n"
        + "".join(f"F{i},L{i},p{i}@example.com,{refusing_phone if i == 4 else f'555-{i}'}\n" for i in range(1, 6))
    )
    reason = f"the record store refused the batch at rows 3-4: phone {refusing_phone} is refused by policy"

    out = CliRunner().invoke(main, ["import", str(path), "--entity", "candidates", "--batch-size", "2"])

    assert out.exit_code == 1, out.output
    assert out.stderr.count("\n") == 1 and out.stderr.startswith(
        f"error: import of people.csv failed: {reason} (dagster run "
    )
    [row] = history(store_url)
    assert (row.status, row.rows_committed, row.created, row.error_message) == ("failed", 2, 2, reason)

    listed = CliRunner().invoke(main, ["imports", "list"])
    assert listed.exit_code == 0, listed.output
    assert listed.output.splitlines()[2] == f"    failed: {reason}"

    shown = CliRunner().invoke(main, ["imports", "show", str(row.id)])
    assert shown.exit_code == 0, shown.output
    assert re.search(rf"^error_message +{re.escape(reason)}$", shown.output, re.MULTILINE)
    assert re.search(r"^rows_committed +2$", shown.output, re.MULTILINE)
    for text in (out.output, listed.output, shown.output, row.error_message):
        assert "INSERT" not in text and "[SQL" not in text and "parameters" not in text

    run_id = re.search(r"dagster run ([0-9a-f-]{36})", out.stderr).group(1)
    with dg.DagsterInstance.from_config(str(env / "var" / "dagster")) as instance:
        failures = [
            r.dagster_event.step_failure_data
            for r in instance.all_logs(run_id)
            if r.dagster_event is not None and r.dagster_event.is_step_failure
        ]
    assert failures[-1].user_failure_data.metadata["reason"].value == reason


def test_rejected_rows_exit_3_with_fail_on_rejected_and_0_without(env: Path, store_url: str) -> None:
    path = env / "people.csv"
    path.write_text("First Name,Last Name,Email,Phone\nA,B,a@example.com,123\nC,D,c@example.com," + "9" * 100 + "\n")

    strict = CliRunner().invoke(main, ["import", str(path), "--entity", "candidates", "--fail-on-rejected"])

    assert strict.exit_code == EXIT_REJECTED == 3, strict.output
    assert strict.stderr.count("\n") == 1, strict.stderr
    assert strict.stderr.startswith("error: 1 of 2 rows were rejected (--fail-on-rejected); fix them in ")
    assert "-failed.csv" in strict.stderr
    [row] = history(store_url)
    assert (row.status, row.created, row.errors) == ("completed", 1, 1)

    path.write_text(path.read_text() + "E,F,e@example.com,456\n")
    lenient = CliRunner().invoke(main, ["import", str(path), "--entity", "candidates"])
    assert lenient.exit_code == 0, lenient.output
    assert lenient.stderr == ""


def test_a_dry_run_with_rejected_rows_also_exits_3_on_request(env: Path, store_url: str) -> None:
    path = env / "people.csv"
    path.write_text("First Name,Last Name,Email,Phone\nA,B,a@example.com,123\nC,D,c@example.com," + "9" * 100 + "\n")

    out = CliRunner().invoke(main, ["import", str(path), "--entity", "candidates", "--dry-run", "--fail-on-rejected"])

    assert out.exit_code == 3, out.output
    assert "dry run: nothing was written" in out.stdout


def test_an_import_whose_every_row_was_rejected_fails_with_exit_1(env: Path, store_url: str) -> None:
    path = env / "people.csv"
    path.write_text("First Name,Last Name,Email,Phone\nA,B,not-an-email,123\nC,D,,456\n")

    out = CliRunner().invoke(main, ["import", str(path), "--entity", "candidates"])

    assert out.exit_code == 1, out.output
    assert out.stderr.startswith("error: import of people.csv failed: all 2 rows failed: email: "), out.stderr
    [row] = history(store_url)
    assert (row.status, row.created, row.errors) == ("failed", 0, 2)
    assert row.error_message.startswith("all 2 rows failed: email: "), row.error_message
    listed = CliRunner().invoke(main, ["imports", "list"])
    assert re.search(r"\bapplicants +people\.csv +0 +0 +0 +2 +failed\b", listed.output), listed.output
    assert listed.output.splitlines()[2].startswith("    failed: all 2 rows failed: ")
