"""A wrong entity or a file without an identity key never changes records; the dry run says why."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from connectors.store import RecordStore, schema
from pipelines.cli import main
from pipelines.imports.engine import ImportOptions, MappingError, list_imports, run_import
from pipelines.imports.mapping import bind_mapping
from tests.imports.helpers import count, rows, write

JOBS = "Job Code,Title,Location\n" + "".join(f"ENG-{i},Backend Engineer,Berlin\n" for i in range(3))
# an applicants export: applicant columns, and a job code and title per row
APPLICANTS = "Application ID,First Name,Last Name,Email,Job Code,Job Title,Stage,Applied At\n" + "".join(
    f"A-{i},Ada{i},Lovelace,ada{i}@example.com,ENG-{i % 3},Engineer,applied,2026-01-0{i % 9 + 1}\n" for i in range(200)
)
REFUSAL = r"applicants\.csv: these columns look like applications \(application_id, first_name, last_name, email, job_code, \.\.\.\), not jobs: pass --entity applications"


def _jobs_snapshot(store, account) -> list:
    return [tuple(r) for r in rows(store, "jobs", account, "code")]


def _audit_rows(store, account) -> int:
    return count(store, "audit_log", account)


@pytest.mark.parametrize("dry_run", [False, True], ids=["import", "dry-run"])
def test_an_applicants_file_imported_as_jobs_is_refused_and_changes_nothing(store, account, tmp_path, dry_run) -> None:
    run_import(
        store, account, write(tmp_path / "jobs.csv", JOBS), ImportOptions(entity="jobs"), failed_rows_dir=tmp_path
    )
    before, audit = _jobs_snapshot(store, account), _audit_rows(store, account)
    assert len(before) == 3

    with pytest.raises(MappingError, match=REFUSAL) as exc:
        run_import(
            store,
            account,
            write(tmp_path / "applicants.csv", APPLICANTS),
            ImportOptions(entity="jobs", dry_run=dry_run),
            failed_rows_dir=tmp_path,
        )

    assert "\n" not in exc.value.message
    assert _jobs_snapshot(store, account) == before
    assert {j.title for j in rows(store, "jobs", account, "code")} == {"Backend Engineer"}
    assert _audit_rows(store, account) == audit
    assert count(store, "applications", account) == 0
    last = list_imports(store, account, limit=1)[0]
    assert (last["status"], last["created"], last["updated"], last["dry_run"]) == ("failed", 0, 0, dry_run)
    assert "look like applications" in last["error_message"]


def test_an_explicit_mapping_says_which_column_is_which_and_is_not_second_guessed(store, account, tmp_path) -> None:
    mapping = {"columns": {"Job Code": "code", "Job Title": "title"}}
    r = run_import(
        store,
        account,
        write(tmp_path / "applicants.csv", APPLICANTS),
        ImportOptions(entity="jobs", mapping=mapping),
        failed_rows_dir=tmp_path,
    )
    assert (r.status, r.created) == ("completed", 3)
    assert {m["column"]: (m["target"], m["how"]) for m in r.details["mapping"]}["Job Code"] == ("code", "mapping")


def test_the_bulkops_command_prints_one_line_and_exits_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sqlite_url: str
) -> None:
    var = tmp_path / "var"
    monkeypatch.setenv("BULKOPS_VAR_DIR", str(var))
    monkeypatch.setenv("BULKOPS_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("DAGSTER_HOME", str(var / "dagster"))
    monkeypatch.setenv("BULKOPS_ACCOUNT", f"t-{uuid.uuid4().hex[:10]}")
    store = RecordStore(sqlite_url)
    account = store.ensure_account(os.environ["BULKOPS_ACCOUNT"])
    runner = CliRunner()
    assert runner.invoke(main, ["import", str(write(tmp_path / "jobs.csv", JOBS)), "--entity", "jobs"]).exit_code == 0
    before = _jobs_snapshot(store, account)

    out = runner.invoke(main, ["import", str(write(tmp_path / "applicants.csv", APPLICANTS)), "--entity", "jobs"])

    assert out.exit_code == 1
    # the last line is the command's own error (dagster's run log comes before it)
    last = out.stderr.strip().splitlines()[-1]
    assert (
        last.startswith("error: ")
        and "applicants.csv" in last
        and "these columns look like applications" in last
        and "pass --entity applications" in last
    ), out.stderr
    assert _jobs_snapshot(store, account) == before
    store.dispose()


@pytest.mark.parametrize(
    ("header", "entity", "message"),
    [
        # a loose partial match (the field name inside a longer header) never maps a required field
        pytest.param(
            ["Primary Email Address", "Name"],
            "candidates",
            "an import of candidates needs an 'email' column",
            id="email-inside-header",
        ),
        pytest.param(
            ["Jobcode Old", "Title"], "jobs", "an import of jobs needs a 'code' column", id="code-inside-header"
        ),
        pytest.param(
            ["Contract", "Status"], "contracts", "an import of contracts needs an 'external_id' column", id="no-key"
        ),
    ],
)
def test_required_fields_map_by_name_or_declared_synonym_only(header, entity, message) -> None:
    with pytest.raises(MappingError, match=message):
        bind_mapping(None, header, entity)


@pytest.mark.parametrize(
    ("header", "entity"),
    [
        pytest.param(
            ["Email", "First Name", "Last Name", "Phone"], "applications", id="candidates-file-as-applications"
        ),
        pytest.param(["Email", "Job Code", "Stage"], "applications", id="applications"),
        pytest.param(["Code", "Title", "Email"], "jobs", id="jobs-with-a-contact-column"),
    ],
)
def test_files_that_fit_their_entity_are_not_refused(header, entity) -> None:
    assert bind_mapping(None, header, entity).rules


def test_the_dry_run_reports_each_column_and_how_it_was_mapped(store, account, tmp_path) -> None:
    path = write(tmp_path / "c.csv", "E-Mail,email_address_2,first_name,Favourite Colour\na@x.io,b@x.io,Ada,blue\n")
    r = run_import(store, account, path, ImportOptions(entity="candidates", dry_run=True), failed_rows_dir=tmp_path)
    assert r.details["mapping"] == [
        {"column": "E-Mail", "target": "email", "how": "synonym"},
        {"column": "first_name", "target": "first_name", "how": "name"},
        {"column": "email_address_2", "target": "data.email_address_2", "how": "unmapped, kept as data"},
        {"column": "Favourite Colour", "target": "data.favourite_colour", "how": "unmapped, kept as data"},
    ]
    assert r.details["entity_fit"] == {"applications": 2, "candidates": 2, "jobs": 0, "contracts": 0}
    assert count(store, "users", account) == 0


JOB_TITLES = "Title,Location\nStaff Engineer,Remote\nPrincipal Engineer,Remote\n"


def test_an_update_with_no_identity_column_stops_before_writing(store, account, tmp_path) -> None:
    run_import(
        store, account, write(tmp_path / "jobs.csv", JOBS), ImportOptions(entity="jobs"), failed_rows_dir=tmp_path
    )
    before, audit = _jobs_snapshot(store, account), _audit_rows(store, account)
    # the code comes from a default: every row would overwrite ENG-0
    mapping = {"columns": {"Title": "title", "Location": "location"}, "defaults": {"code": "ENG-0"}}
    path = write(tmp_path / "titles.csv", JOB_TITLES)

    with pytest.raises(
        MappingError, match=r"titles\.csv: no column of the file identifies existing jobs .*--allow-update-without-key"
    ):
        run_import(store, account, path, ImportOptions(entity="jobs", mapping=mapping), failed_rows_dir=tmp_path)
    assert _jobs_snapshot(store, account) == before and _audit_rows(store, account) == audit

    # skip and create never overwrite, so they need no key
    r = run_import(
        store,
        account,
        path,
        ImportOptions(entity="jobs", mapping=mapping, on_duplicate="skip", force=True),
        failed_rows_dir=tmp_path,
    )
    assert (r.status, r.updated) == ("completed", 0) and _jobs_snapshot(store, account) == before

    r = run_import(
        store,
        account,
        path,
        ImportOptions(entity="jobs", mapping=mapping, allow_update_without_key=True, force=True),
        failed_rows_dir=tmp_path,
    )
    assert r.status == "completed" and r.updated >= 1
    with store.engine.connect() as c:
        title = c.scalar(
            sa.select(schema.jobs.c.title).where(schema.jobs.c.account_id == account, schema.jobs.c.code == "ENG-0")
        )
    assert title == "Principal Engineer"
