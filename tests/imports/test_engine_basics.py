"""run_import end to end on SQLite and PostgreSQL: counts, records, audit, history, re-runs."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import sqlalchemy as sa

from connectors.store import schema
from pipelines.imports.engine import (
    ImportFailed,
    ImportOptions,
    MappingError,
    list_imports,
    rollback_import,
    run_import,
)
from tests.imports.helpers import apps_csv, count, rows

SAMPLE = Path(__file__).resolve().parents[2] / "samples" / "applications.csv"
MAPPING = Path(__file__).resolve().parents[2] / "samples" / "applications.mapping.yaml"


def test_sample_file_imports_candidates_applications_and_form_submissions(store, account, tmp_path) -> None:
    r = run_import(store, account, SAMPLE, ImportOptions(batch_size=7), failed_rows_dir=tmp_path)
    assert (r.status, r.rows_read, r.created, r.updated, r.errors) == ("completed", 24, 20, 4, 0)
    assert count(store, "users", account) == 20
    assert count(store, "jobs", account) == 4
    assert count(store, "applications", account) == 20
    assert count(store, "form_submissions", account) == 20
    margaret = [u for u in rows(store, "users", account, "email_normalized") if u.first_name == "Margaret"]
    assert [u.email_normalized for u in margaret] == ["margaret.hamilton@example.com"]
    app = next(a for a in rows(store, "applications", account) if a.external_id == "APP-1000")
    assert app.import_id == r.import_id and app.data["cover_letter"].startswith("Hello,\n")
    assert Path(r.failed_rows_path).read_text().startswith("_row,_line,_column,_error,Application ID")
    # every created or updated record is audited with the import id
    with store.engine.connect() as c:
        ops = dict(
            c.execute(
                sa.select(schema.audit_log.c.operation, sa.func.count())
                .where(schema.audit_log.c.change_set_id == r.import_id)
                .group_by(schema.audit_log.c.operation)
            ).all()
        )
    assert ops == {"import.create": 20 + 20 + 20 + 4, "import.update": 4}


def test_sample_with_example_mapping(store, account, tmp_path) -> None:
    from pipelines.imports.options import load_mapping

    r = run_import(store, account, SAMPLE, ImportOptions(mapping=load_mapping(MAPPING)), failed_rows_dir=tmp_path)
    assert (r.created, r.updated, r.errors) == (20, 4, 0)
    stages = {a.external_id: a.stage for a in rows(store, "applications", account)}
    assert stages["APP-1002"] == "review" and stages["APP-1001"] == "screening"


def test_identical_file_is_skipped_and_force_reimports(store, account, tmp_path) -> None:
    first = run_import(store, account, SAMPLE, ImportOptions(), failed_rows_dir=tmp_path)
    again = run_import(store, account, SAMPLE, ImportOptions(), failed_rows_dir=tmp_path)
    assert (again.status, again.duplicate_of, again.skipped) == ("skipped", first.import_id, 24)
    forced = run_import(store, account, SAMPLE, ImportOptions(force=True), failed_rows_dir=tmp_path)
    # the 16 rows equal to their records are unchanged; the 4 records the file names twice change twice
    assert (forced.status, forced.created, forced.updated, forced.skipped) == ("completed", 0, 8, 16)
    assert forced.details["unchanged"] == 16
    assert count(store, "applications", account) == 20
    assert [h["status"] for h in list_imports(store, account)] == ["completed", "skipped", "completed"]


def test_dry_run_writes_no_records(store, account, tmp_path) -> None:
    r = run_import(store, account, SAMPLE, ImportOptions(dry_run=True, batch_size=5), failed_rows_dir=tmp_path)
    assert (r.dry_run, r.created, r.updated) == (True, 20, 4)
    assert r.sample and r.sample[0]["outcome"] == "created"
    for table in ("users", "jobs", "applications", "form_submissions", "audit_log"):
        assert count(store, table, account) == 0
    assert list_imports(store, account)[0]["dry_run"] is True


def test_mapping_naming_missing_column_writes_nothing(store, account, tmp_path) -> None:
    mapping = {"columns": {"E-mail Address": "email"}}
    with pytest.raises(MappingError, match="E-mail Address"):
        run_import(store, account, SAMPLE, ImportOptions(mapping=mapping), failed_rows_dir=tmp_path)
    assert count(store, "applications", account) == 0
    assert count(store, "users", account) == 0
    assert list_imports(store, account)[0]["status"] == "failed"


def test_duplicates_inside_one_file_are_deterministic(store, account, tmp_path) -> None:
    path = apps_csv(
        tmp_path,
        [
            "A-1,Ann,One,ann@x.org,J-1,Applied,2026-01-01,1",
            "A-2,Ann,One, ANN@X.ORG ,J-1,Interview,2026-01-02,2",
            "A-1,Ann,One,ann@x.org,J-1,Offer,2026-01-03,3",
        ],
    )
    r = run_import(store, account, path, ImportOptions(), failed_rows_dir=tmp_path)
    assert (r.created, r.updated) == (1, 2)
    (app,) = rows(store, "applications", account)
    assert app.stage == "offer" and app.external_id == "A-1"


def test_duplicates_across_files(store, account, tmp_path) -> None:
    a = apps_csv(tmp_path, ["A-1,Ann,One,ann@x.org,J-1,Applied,2026-01-01,1"], "a.csv")
    b = apps_csv(
        tmp_path, ["A-9,Ann,One,Ann@X.org,J-1,Offer,2026-01-01,1", "B-1,Bob,Two,bob@x.org,J-1,,2026-01-01,1"], "b.csv"
    )
    run_import(store, account, a, ImportOptions(), failed_rows_dir=tmp_path)
    r = run_import(store, account, b, ImportOptions(), failed_rows_dir=tmp_path)
    assert (r.created, r.updated) == (1, 1)
    assert {a.external_id: a.stage for a in rows(store, "applications", account)} == {"A-1": "offer", "B-1": "applied"}


@pytest.mark.parametrize(
    ("strategy", "created", "updated", "skipped", "apps", "flags", "stage"),
    [
        pytest.param("skip", 0, 0, 1, 1, 0, "applied", id="skip"),
        pytest.param("update", 0, 1, 0, 1, 0, "offer", id="update"),
        pytest.param("create", 1, 0, 0, 2, 0, "applied", id="create-anyway"),
        pytest.param("flag", 0, 0, 1, 1, 1, "applied", id="flag-for-review"),
    ],
)
def test_duplicate_strategies(
    store, account, tmp_path, strategy, created, updated, skipped, apps, flags, stage
) -> None:
    a = apps_csv(tmp_path, ["A-1,Ann,One,ann@x.org,J-1,Applied,2026-01-01,1"], "a.csv")
    b = apps_csv(tmp_path, ["A-1,Ann,One,ann@x.org,J-1,Offer,2026-01-01,1"], "b.csv")
    run_import(store, account, a, ImportOptions(), failed_rows_dir=tmp_path)
    r = run_import(store, account, b, ImportOptions(on_duplicate=strategy), failed_rows_dir=tmp_path)
    assert (r.created, r.updated, r.skipped) == (created, updated, skipped)
    assert count(store, "applications", account) == apps
    assert count(store, "import_flags", account) == flags
    first = rows(store, "applications", account, "created_at")[0]
    assert first.stage == stage


def _bad_rows_csv(tmp_path: Path) -> Path:
    return apps_csv(
        tmp_path,
        [
            "A-1,Ann,One,ann@x.org,J-1,Applied,2026-01-01,1",
            "A-2,Bob,Two,not-an-email,J-1,Applied,2026-01-01,1",
            "A-3,Cy,Three,cy@x.org,J-1,Applied,31/31/2026,1",
            "A-4,Di,Four,di@x.org,J-1,Applied,2026-01-01,1",
        ],
    )


def test_error_policy_skip_keeps_good_rows_and_writes_failed_rows_csv(store, account, tmp_path) -> None:
    r = run_import(store, account, _bad_rows_csv(tmp_path), ImportOptions(), failed_rows_dir=tmp_path / "failed")
    assert (r.created, r.errors, r.status) == (2, 2, "completed")
    with open(r.failed_rows_path, newline="") as f:
        failed = list(csv.DictReader(f))
    assert [(x["_row"], x["_line"], x["_column"]) for x in failed] == [("2", "3", "email"), ("3", "4", "Applied At")]
    assert "31/31/2026" in failed[1]["_error"] and failed[1]["Application ID"] == "A-3"
    assert not list((tmp_path / "failed").glob(".*.part"))


def test_nul_bytes_reject_their_row_on_both_backends(store, account, tmp_path) -> None:
    # PostgreSQL's COPY refused the whole batch ("invalid byte sequence 0x00"); SQLite kept the NUL
    path = apps_csv(
        tmp_path,
        [
            "N-1,Ann,Lee,ann@example.com,JOB-1,Applied,2026-01-02,3",
            "N-2,B\x00b,Ray,bob@example.com,JOB-1,Applied,2026-01-02,4",
            "N-3,Cy,Doe,cy@example.com,JOB-1,Applied,2026-01-02,5\x00",
        ],
    )
    r = run_import(store, account, path, ImportOptions(), failed_rows_dir=tmp_path / "failed")
    assert (r.status, r.created, r.errors) == ("completed", 1, 2)
    assert [a.external_id for a in rows(store, "applications", account)] == ["N-1"]
    with open(r.failed_rows_path, newline="") as f:
        failed = list(csv.DictReader(f))
    assert [(x["_row"], x["_column"]) for x in failed] == [("2", "first_name"), ("3", "years_experience")]
    assert all("NUL character" in x["_error"] for x in failed)


def test_error_policy_abort_stops_at_first_error(store, account, tmp_path) -> None:
    with pytest.raises(ImportFailed, match=r"row 2, column 'email'") as exc:
        run_import(
            store,
            account,
            _bad_rows_csv(tmp_path),
            ImportOptions(error_policy="abort", batch_size=1),
            failed_rows_dir=tmp_path,
        )
    assert exc.value.result.status == "failed"
    assert [a.external_id for a in rows(store, "applications", account)] == ["A-1"]


@pytest.mark.parametrize(
    ("threshold", "fails"), [pytest.param(0.6, False, id="under"), pytest.param(0.4, True, id="over")]
)
def test_error_policy_threshold(store, account, tmp_path, threshold, fails) -> None:
    opts = ImportOptions(error_policy="threshold", error_threshold=threshold)
    if fails:
        with pytest.raises(ImportFailed, match="threshold"):
            run_import(store, account, _bad_rows_csv(tmp_path), opts, failed_rows_dir=tmp_path)
        assert count(store, "applications", account) == 0
    else:
        assert run_import(store, account, _bad_rows_csv(tmp_path), opts, failed_rows_dir=tmp_path).created == 2


def test_unknown_job_rejected_when_jobs_are_not_created(store, account, tmp_path) -> None:
    path = apps_csv(tmp_path, ["A-1,Ann,One,ann@x.org,NOPE,Applied,2026-01-01,1"])
    r = run_import(store, account, path, ImportOptions(create_missing_jobs=False), failed_rows_dir=tmp_path)
    assert (r.created, r.errors) == (0, 1)
    assert count(store, "jobs", account) == 0


def test_killed_run_resumes_without_duplicates(store, account, tmp_path) -> None:
    lines = [f"A-{i},F{i},L{i},p{i}@x.org,J-{i % 3},Applied,2026-01-01,{i}" for i in range(30)]
    lines[12] = "A-12,F,L,bad-email,J-1,Applied,2026-01-01,1"
    path = apps_csv(tmp_path, lines)

    def kill_after_two(p) -> None:
        if p.batches_committed == 2:
            raise KeyboardInterrupt("killed")

    with pytest.raises(KeyboardInterrupt):
        run_import(
            store, account, path, ImportOptions(batch_size=5), failed_rows_dir=tmp_path, on_progress=kill_after_two
        )
    assert count(store, "applications", account) == 10
    row = list_imports(store, account)[0]
    assert row["status"] == "cancelled" and row["finished_at"] is not None
    assert (
        row["error_message"]
        == "interrupted (KeyboardInterrupt: killed) after 10 committed rows; a re-run resumes there"
    )
    r = run_import(store, account, path, ImportOptions(batch_size=5), failed_rows_dir=tmp_path)
    assert (r.rows_read, r.created, r.errors) == (30, 29, 1)
    assert count(store, "applications", account) == 29
    assert len(list_imports(store, account)) == 1
    with open(r.failed_rows_path, newline="") as f:
        assert [x["_row"] for x in csv.DictReader(f)] == ["13"]


def test_should_stop_ends_cancelled_between_batches_and_a_rerun_resumes(store, account, tmp_path) -> None:
    path = apps_csv(tmp_path, [f"A-{i},F{i},L{i},p{i}@x.org,J-{i % 3},Applied,2026-01-01,{i}" for i in range(30)])
    committed: list[int] = []

    r = run_import(
        store,
        account,
        path,
        ImportOptions(batch_size=5),
        failed_rows_dir=tmp_path,
        on_progress=lambda p: committed.append(p.batches_committed),
        should_stop=lambda: len(committed) == 2,
    )
    assert (r.status, r.rows_read, r.created) == ("cancelled", 10, 10)
    row = list_imports(store, account)[0]
    assert row["status"] == "cancelled" and row["finished_at"] is not None
    assert "after 10 committed rows" in row["error_message"]
    assert count(store, "applications", account) == 10
    r = run_import(store, account, path, ImportOptions(batch_size=5), failed_rows_dir=tmp_path)
    assert (r.status, r.rows_read, r.created) == ("completed", 30, 30)
    assert count(store, "applications", account) == 30
    assert len(list_imports(store, account)) == 1


def test_auto_advance_and_default_stage(store, account, tmp_path) -> None:
    path = apps_csv(tmp_path, ["A-1,Ann,One,ann@x.org,J-1,,2026-01-01,7", "A-2,Bob,Two,bob@x.org,J-1,,2026-01-01,2"])
    rule = {"when": {"field": "years_experience", "op": ">=", "value": 5}, "stage": "interview"}
    run_import(store, account, path, ImportOptions(default_stage="new", auto_advance=(rule,)), failed_rows_dir=tmp_path)
    assert {a.external_id: a.stage for a in rows(store, "applications", account)} == {"A-1": "interview", "A-2": "new"}


def test_rollback_round_trip_leaves_other_accounts_alone(store, account, tmp_path) -> None:
    other = store.ensure_account(f"other-{account.hex[:8]}")
    run_import(store, other, SAMPLE, ImportOptions(), failed_rows_dir=tmp_path)
    a = apps_csv(tmp_path, ["A-1,Ann,One,ann@x.org,J-1,Applied,2026-01-01,1"], "a.csv")
    b = apps_csv(tmp_path, ["A-1,Ann,One,ann@x.org,J-1,Offer,2026-01-01,1", "B-1,Bob,Two,bob@x.org,J-2,,,1"], "b.csv")
    run_import(store, account, a, ImportOptions(), failed_rows_dir=tmp_path)
    second = run_import(store, account, b, ImportOptions(), failed_rows_dir=tmp_path)
    out = rollback_import(store, account, second.import_id, actor="tester")
    assert out["deleted"]["applications"] == 1 and out["restored"]["applications"] == 1
    (app,) = rows(store, "applications", account)
    assert (app.external_id, app.stage) == ("A-1", "applied")
    assert count(store, "users", account) == 1 and count(store, "jobs", account) == 1
    assert list_imports(store, account)[0]["status"] == "rolled_back"
    with pytest.raises(ImportFailed, match="already rolled back"):
        rollback_import(store, account, second.import_id, actor="tester")
    assert count(store, "applications", other) == 20
    with store.engine.connect() as c:
        ops = (
            c.execute(
                sa.select(schema.audit_log.c.operation)
                .join(schema.change_sets, schema.change_sets.c.id == schema.audit_log.c.change_set_id)
                .where(schema.change_sets.c.rollback_of == second.import_id, schema.audit_log.c.actor == "tester")
            )
            .scalars()
            .all()
        )
    assert sorted(set(ops)) == ["import.rollback.delete", "import.rollback.restore"]


@pytest.mark.parametrize("entity", ["candidates", "jobs"])
def test_other_entities(store, account, tmp_path, entity) -> None:
    if entity == "candidates":
        text = "Candidate ID,Full Name,Email\nC-1,Guido van Rossum,GUIDO@x.org\nC-2,Ada Lovelace,ada@x.org\nC-1,Guido V Rossum,guido@x.org\n"
    else:
        text = "Job Code,Title,Location\nJ-1,Engineer,Leeds\nJ-2,Analyst,York\nJ-1,Senior Engineer,\n"
    path = tmp_path / f"{entity}.csv"
    path.write_text(text)
    r = run_import(store, account, path, ImportOptions(entity=entity), failed_rows_dir=tmp_path)
    assert (r.created, r.updated, r.errors) == (2, 1, 0)
    if entity == "candidates":
        guido = next(u for u in rows(store, "users", account, "email_normalized") if u.external_id == "C-1")
        assert (guido.first_name, guido.last_name) == ("Guido", "V Rossum")
    else:
        assert {j.code: (j.title, j.location) for j in rows(store, "jobs", account, "code")} == {
            "J-1": ("Senior Engineer", "Leeds"),
            "J-2": ("Analyst", "York"),
        }


def test_contracts_reference_applications_by_external_id(store, account, tmp_path) -> None:
    run_import(store, account, SAMPLE, ImportOptions(), failed_rows_dir=tmp_path)
    path = tmp_path / "contracts.csv"
    path.write_text("Contract ID,Application ID,Status,Salary\nK-1,APP-1000,sent,50000\nK-2,APP-404,draft,1\n")
    r = run_import(
        store,
        account,
        path,
        ImportOptions(
            entity="contracts",
            mapping={
                "columns": {
                    "Contract ID": "external_id",
                    "Application ID": "application_external_id",
                    "Status": "status",
                    "Salary": "terms.salary",
                }
            },
        ),
        failed_rows_dir=tmp_path,
    )
    assert (r.created, r.errors) == (1, 1)
    (k,) = rows(store, "contracts", account)
    assert k.terms == {"salary": "50000"} and k.status == "sent"


def test_two_rows_matching_one_record_by_different_keys_are_written_as_if_one_after_the_other(
    store, account, tmp_path
) -> None:
    """Row 1 finds Ann's application by its external id, row 2 by Ann's email: the same record.
    Row 1 gives it to Zed; row 2, written after it, then finds no application of Ann's for the job
    and creates one, as a row-by-row import would."""
    a = apps_csv(tmp_path, ["A-1,Ann,One,ann@x.org,J-1,Applied,2026-01-01,1"], "a.csv")
    run_import(store, account, a, ImportOptions(), failed_rows_dir=tmp_path)
    b = apps_csv(
        tmp_path,
        ["A-1,Zed,Zee,zed@x.org,J-1,Interview,2026-01-02,2", "A-5,Ann,One,ann@x.org,J-1,Offer,2026-01-03,3"],
        "b.csv",
    )
    r = run_import(store, account, b, ImportOptions(), failed_rows_dir=tmp_path)
    assert (r.created, r.updated, r.skipped, r.errors) == (1, 1, 0, 0)
    emails = {u.id: u.email_normalized for u in rows(store, "users", account, "email_normalized")}
    got = {x.external_id: (emails[x.candidate_id], x.stage) for x in rows(store, "applications", account)}
    assert got == {"A-1": ("zed@x.org", "interview"), "A-5": ("ann@x.org", "offer")}
