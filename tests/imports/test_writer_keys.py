"""Match keys (job codes, external ids) ignore case and whitespace; the first spelling stays (SQLite and PostgreSQL)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from connectors.store import RecordStore, schema
from connectors.store.imports import ImportWriter
from pipelines.imports.engine import ImportOptions, rollback_import, run_import
from tests.imports.helpers import apps_csv, count, rows


def _codes(store: RecordStore, account: uuid.UUID) -> list[str]:
    return sorted(j.code for j in rows(store, "jobs", account, "code"))


def test_one_file_spelling_a_job_code_two_ways_makes_one_job(store, account, tmp_path) -> None:
    path = apps_csv(
        tmp_path,
        [
            "K-1,Ann,One,ann@x.org,ENG-1,Applied,2026-01-01,1",
            'K-2,Bob,Two,bob@x.org," eng-1 ",Applied,2026-01-01,2',
            "K-3,Cy,Three,cy@x.org,Eng-1,Applied,2026-01-01,3",
        ],
    )
    r = run_import(store, account, path, ImportOptions(), failed_rows_dir=tmp_path)
    assert (r.created, r.errors, r.details["jobs_created"]) == (3, 0, 1)
    assert _codes(store, account) == ["ENG-1"]
    assert len({a.job_id for a in rows(store, "applications", account)}) == 1


def test_two_imports_spelling_a_job_code_two_ways_share_the_job(store, account, tmp_path) -> None:
    run_import(
        store,
        account,
        apps_csv(tmp_path, ["K-1,Ann,One,ann@x.org,ENG-1,Applied,2026-01-01,1"], "a.csv"),
        ImportOptions(),
        failed_rows_dir=tmp_path,
    )
    r = run_import(
        store,
        account,
        apps_csv(tmp_path, ['K-2,Bob,Two,bob@x.org," eng-1 ",Applied,2026-01-01,2'], "b.csv"),
        ImportOptions(),
        failed_rows_dir=tmp_path,
    )
    assert (r.created, r.details["jobs_created"]) == (1, 0)
    assert _codes(store, account) == ["ENG-1"]
    # and an application found again by the same candidate and job is an update, not a second one
    again = run_import(
        store,
        account,
        apps_csv(tmp_path, [",Ann,One,ann@x.org,eng-1,Offer,2026-01-01,1"], "c.csv"),
        ImportOptions(),
        failed_rows_dir=tmp_path,
    )
    assert (again.created, again.updated) == (0, 1)
    assert count(store, "applications", account) == 2


def test_jobs_file_matches_codes_without_case_and_keeps_the_first_spelling(store, account, tmp_path) -> None:
    a = tmp_path / "a.csv"
    a.write_text("Job Code,Title\nENG-1,Engineer\neng-1 ,Senior Engineer\n")
    r = run_import(store, account, a, ImportOptions(entity="jobs"), failed_rows_dir=tmp_path)
    assert (r.created, r.updated) == (1, 1)
    b = tmp_path / "b.csv"
    b.write_text("Job Code,Title\n Eng-1,Staff Engineer\n")
    r = run_import(store, account, b, ImportOptions(entity="jobs"), failed_rows_dir=tmp_path)
    assert (r.created, r.updated) == (0, 1)
    [job] = rows(store, "jobs", account, "code")
    assert (job.code, job.title) == ("ENG-1", "Staff Engineer")


@pytest.mark.parametrize(
    ("entity", "first", "second"),
    [
        pytest.param(
            "applications",
            "Application ID,Email,Stage\nAPP-7,ann@x.org,applied\n",
            "Application ID,Email,Stage\n app-7 ,ann@x.org,offer\n",
            id="applications",
        ),
        pytest.param(
            "candidates",
            "Candidate ID,Email,Phone\nCAND-7,ann@x.org,1\n",
            "Candidate ID,Email,Phone\ncand-7,ANN@x.org,2\n",
            id="candidates",
        ),
        pytest.param(
            "jobs", "Job ID,Job Code,Title\nREQ-7,J-1,Engineer\n", "Job ID,Job Code,Title\nreq-7,j-1,Lead\n", id="jobs"
        ),
        pytest.param(
            "contracts", "Contract ID,Status\nCTR-7,draft\n", "Contract ID,Status\nctr-7 ,sent\n", id="contracts"
        ),
    ],
)
def test_external_ids_match_without_case(store, account, tmp_path, entity, first, second) -> None:
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    a.write_text(first)
    b.write_text(second)
    run_import(store, account, a, ImportOptions(entity=entity), failed_rows_dir=tmp_path)
    r = run_import(store, account, b, ImportOptions(entity=entity), failed_rows_dir=tmp_path)
    assert (r.created, r.updated, r.errors) == (0, 1, 0)
    [record] = rows(store, schema.ENTITY_TABLES[entity].name, account, "created_at")
    assert record.external_id == first.splitlines()[1].split(",")[0]


def test_contracts_find_their_application_without_case(store, account, tmp_path) -> None:
    run_import(
        store,
        account,
        apps_csv(tmp_path, ["APP-1000,Ann,One,ann@x.org,J-1,Applied,2026-01-01,1"]),
        ImportOptions(),
        failed_rows_dir=tmp_path,
    )
    path = tmp_path / "contracts.csv"
    path.write_text("Contract ID,Application ID,Status\nK-1, app-1000 ,sent\n")
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
                }
            },
        ),
        failed_rows_dir=tmp_path,
    )
    assert (r.created, r.errors) == (1, 0)
    [contract] = rows(store, "contracts", account)
    assert contract.application_id == rows(store, "applications", account)[0].id


def _legacy_jobs(store: RecordStore, account: uuid.UUID) -> dict[str, uuid.UUID]:
    """Two jobs whose codes differ only in case, as a store written before keys were folded holds them."""
    old = datetime(2025, 1, 1, tzinfo=UTC)
    ids = {"ENG-1": uuid.uuid4(), "eng-1": uuid.uuid4()}
    with store.engine.begin() as c:
        for i, (code, id_) in enumerate(ids.items()):
            c.execute(
                schema.jobs.insert().values(
                    id=id_,
                    account_id=account,
                    code=code,
                    title=f"job {code}",
                    created_at=old + timedelta(days=i),
                    updated_at=old + timedelta(days=i),
                )
            )
    return ids


def test_codes_differing_only_in_case_from_before_match_the_older_job(store, account, tmp_path) -> None:
    ids = _legacy_jobs(store, account)
    r = run_import(
        store,
        account,
        apps_csv(tmp_path, ["K-1,Ann,One,ann@x.org,Eng-1,Applied,2026-01-01,1"]),
        ImportOptions(),
        failed_rows_dir=tmp_path,
    )
    assert (r.created, r.details["jobs_created"]) == (1, 0)
    assert rows(store, "applications", account)[0].job_id == ids["ENG-1"]
    jobs = tmp_path / "jobs.csv"
    jobs.write_text("Job Code,Title\neng-1,Renamed\n")
    r = run_import(store, account, jobs, ImportOptions(entity="jobs"), failed_rows_dir=tmp_path)
    assert (r.updated, r.errors) == (1, 0)
    assert {j.code: j.title for j in rows(store, "jobs", account, "code")} == {"ENG-1": "Renamed", "eng-1": "job eng-1"}


def test_a_code_of_another_job_is_refused_without_case(store, account, tmp_path) -> None:
    jobs = tmp_path / "jobs.csv"
    jobs.write_text("Job ID,Job Code,Title\nR-1,ENG-1,Engineer\nR-2,ENG-2,Analyst\n")
    run_import(store, account, jobs, ImportOptions(entity="jobs"), failed_rows_dir=tmp_path)
    # R-2 matched by its external id asks for R-1's code in another case
    jobs.write_text("Job ID,Job Code,Title\nR-2,eng-1,Analyst\n")
    r = run_import(store, account, jobs, ImportOptions(entity="jobs", force=True), failed_rows_dir=tmp_path)
    assert (r.updated, r.errors) == (0, 1)
    assert _codes(store, account) == ["ENG-1", "ENG-2"]


def test_case_sensitive_keys_keep_spellings_apart(store, account, tmp_path) -> None:
    path = apps_csv(
        tmp_path,
        ["K-1,Ann,One,ann@x.org,ENG-1,Applied,2026-01-01,1", "k-1,Bob,Two,bob@x.org,eng-1,Applied,2026-01-01,2"],
    )
    r = run_import(store, account, path, ImportOptions(case_sensitive_keys=True), failed_rows_dir=tmp_path)
    assert (r.created, r.updated, r.details["jobs_created"]) == (2, 0, 2)
    assert _codes(store, account) == ["ENG-1", "eng-1"]


def test_rollback_after_a_folded_match_restores_and_deletes(store, account, tmp_path) -> None:
    run_import(
        store,
        account,
        apps_csv(tmp_path, ["K-1,Ann,One,ann@x.org,ENG-1,Applied,2026-01-01,1"], "a.csv"),
        ImportOptions(),
        failed_rows_dir=tmp_path,
    )
    before = _apps(store, account)
    second = run_import(
        store,
        account,
        apps_csv(
            tmp_path,
            ["k-1,Ann,One,ann@x.org,eng-1,Offer,2026-01-01,1", "K-2,Bob,Two,bob@x.org, ENG-1,Applied,2026-01-01,2"],
            "b.csv",
        ),
        ImportOptions(),
        failed_rows_dir=tmp_path,
    )
    assert (second.created, second.updated) == (1, 1)
    out = rollback_import(store, account, second.import_id, actor="tester")
    assert (out["restored"]["applications"], out["deleted"]["applications"]) == (1, 1)
    assert _apps(store, account) == before
    assert _codes(store, account) == ["ENG-1"]


def _apps(store: RecordStore, account: uuid.UUID) -> list[tuple]:
    # all but updated_at, which the rollback sets
    return [(*tuple(a)[:-4], a.deleted_at, a.import_id) for a in rows(store, "applications", account)]


@pytest.mark.parametrize(
    ("table", "column"),
    [("jobs", "code"), ("applications", "external_id"), ("users", "external_id"), ("contracts", "external_id")],
)
@pytest.mark.parametrize("case_sensitive", [False, True])
def test_key_lookups_are_probes_of_the_folded_indexes(store, table, column, case_sensitive) -> None:
    with store.engine.connect() as conn:
        writer = ImportWriter(
            conn,
            entity="jobs",
            account_id=uuid.uuid4(),
            import_id=uuid.uuid4(),
            actor="t",
            columns=[],
            json_spec={},
            case_sensitive_keys=case_sensitive,
        )
        t = schema.metadata.tables[table].alias("t")
        probe = sa.select(t.c.id).where(t.c.account_id == writer.params["acct"], writer.keys.equal(t.c[column], "x"))
        sql = str(probe.compile(conn, compile_kwargs={"literal_binds": True}))
        # case-sensitive codes may probe the exact unique index instead: a probe all the same
        exact = case_sensitive and table == "jobs"
        if conn.dialect.name == "postgresql":
            # On a small shared table the planner may pick any (account_id, ...) index at a tie in cost. A private
            # copy keeps only the indexes on this column: the probe's key expression must be their index
            # condition (seq scans off; an index that only narrows by account is not there to take instead).
            conn.exec_driver_sql(f"CREATE TEMP TABLE probe_copy (LIKE {table}) ON COMMIT DROP")
            indexes = conn.exec_driver_sql(
                "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %(t)s AND schemaname = current_schema()",
                {"t": table},
            )
            for name, definition in list(indexes):
                if column in definition.split(" USING ", 1)[1]:
                    copy = definition.replace(f'INDEX "{name}"', "INDEX").replace(f"INDEX {name} ", "INDEX ")
                    conn.exec_driver_sql(
                        copy.split(" ON ", 1)[0] + " ON probe_copy USING " + copy.split(" USING ", 1)[1]
                    )
            conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
            copy_sql = sql.replace(f"FROM {table} AS t", "FROM probe_copy AS t")
            assert copy_sql != sql, sql
            plan = "\n".join(conn.exec_driver_sql(f"EXPLAIN {copy_sql}").scalars())
            condition = "\n".join(line for line in plan.splitlines() if "Index Cond" in line)
            assert f"lower(({column})::text)" in condition or (exact and f"({column})::text = " in condition), plan
        else:
            plan = "\n".join(str(r[-1]) for r in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}"))
            assert f"ix_{table}_account_id_lower_{column}" in plan or (
                exact and "jobs" in plan and "INDEX" in plan.upper()
            ), plan


@pytest.mark.parametrize(
    ("flag", "codes"),
    [
        pytest.param([], ["ENG-1"], id="folded"),
        pytest.param(["--case-sensitive-keys"], ["ENG-1", "eng-1"], id="case-sensitive"),
    ],
)
def test_bulkops_import_case_sensitive_keys_reaches_the_writer(sqlite_url, tmp_path, monkeypatch, flag, codes) -> None:
    from click.testing import CliRunner

    from pipelines.cli import main

    slug = f"t-{uuid.uuid4().hex[:10]}"
    monkeypatch.setenv("BULKOPS_VAR_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("BULKOPS_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "var" / "dagster"))
    store = RecordStore(sqlite_url)
    account = store.ensure_account(slug)
    path = apps_csv(
        tmp_path,
        ["K-1,Ann,One,ann@x.org,ENG-1,Applied,2026-01-01,1", "K-2,Bob,Two,bob@x.org,eng-1,Applied,2026-01-01,2"],
    )
    out = CliRunner().invoke(main, ["import", str(path), "--account", slug, *flag])
    assert out.exit_code == 0, out.output
    assert _codes(store, account) == codes
    store.dispose()


@pytest.mark.postgres
def test_job_codes_are_looked_up_once_per_code_not_once_per_row(pg_url, tmp_path) -> None:
    # the lookup runs as EXPLAIN ANALYZE (same effect) so its plan says how often each probe ran
    store = RecordStore(pg_url)
    account = store.ensure_account(f"probe-{uuid.uuid4().hex[:8]}")
    plans: list[dict] = []

    def explained(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        if "found_jobs" in statement:
            return f"EXPLAIN (ANALYZE, FORMAT JSON) {statement}", parameters
        return statement, parameters

    def kept(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        if statement.startswith("EXPLAIN (ANALYZE"):
            plans.append(cursor.fetchone()[0][0]["Plan"])

    def loops(node: dict) -> list[int]:
        own = [node["Actual Loops"]] if node.get("Subplan Name", "").startswith("SubPlan") else []
        return own + [n for child in node.get("Plans", []) for n in loops(child)]

    sa.event.listen(store.engine, "before_cursor_execute", explained, retval=True)
    sa.event.listen(store.engine, "after_cursor_execute", kept)
    lines = [f"P-{i},F,L,p{i}@x.org,{'ENG' if i % 2 else 'eng'}-{i % 3},Applied,2026-01-01,1" for i in range(300)]
    r = run_import(store, account, apps_csv(tmp_path, lines), ImportOptions(), failed_rows_dir=tmp_path)
    assert (r.created, r.details["jobs_created"]) == (300, 3)
    assert plans and all(max(loops(p), default=0) <= 3 for p in plans), [loops(p) for p in plans]
    store.dispose()
