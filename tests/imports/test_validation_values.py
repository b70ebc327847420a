"""Stage and status values come from the account's declared sets: folded, mapped, or the row is rejected."""

from __future__ import annotations

import csv

import pytest
import sqlalchemy as sa

from connectors.store import registry, schema
from pipelines.imports.engine import ImportFailed, ImportOptions, run_import
from tests.imports.helpers import apps_csv, count, rows, write


def _failed(r) -> list[dict]:
    with open(r.failed_rows_path, newline="") as f:
        return list(csv.DictReader(f))


def _set_values(store, account, values: dict) -> None:
    with store.begin() as c:
        c.execute(
            schema.accounts.update().where(schema.accounts.c.id == account).values(settings={"value_sets": values})
        )


def test_stages_fold_onto_the_declared_values_and_unknown_ones_reject_their_row(store, account, tmp_path) -> None:
    path = apps_csv(
        tmp_path,
        [
            "A-1,Ada,L,a1@x.io,ENG-1,Phone Screen,,1",
            "A-2,Ada,L,a2@x.io,ENG-1,  IN   review ,,1",
            "A-3,Ada,L,a3@x.io,ENG-1,Offer,,1",
            "A-4,Ada,L,a4@x.io,ENG-1,banana,,1",
            "A-5,Ada,L,a5@x.io,ENG-1,,,1",
        ],
    )
    r = run_import(store, account, path, ImportOptions(default_stage="New"), failed_rows_dir=tmp_path)
    assert (r.created, r.errors) == (4, 1)
    stages = {a.external_id: a.stage for a in rows(store, "applications", account)}
    assert stages == {"A-1": "screening", "A-2": "review", "A-3": "offer", "A-5": "new"}
    [bad] = _failed(r)
    assert (bad["_row"], bad["_column"]) == ("4", "stage")
    assert bad["_error"] == (
        f"stage 'banana' is not one of {', '.join(registry.APPLICATION_STAGES)}: "
        "add it to the map: of column 'Stage' in the mapping, or to the account's stage values"
    )


def test_a_value_map_turns_unknown_values_into_declared_ones(store, account, tmp_path) -> None:
    mapping = {
        "columns": {
            "Application ID": "external_id",
            "Email": "email",
            "Job Code": "job_code",
            "Stage": {"target": "stage", "map": {"Banana": "Offer", "Kiwi": "nowhere"}},
        }
    }
    path = apps_csv(tmp_path, ["A-1,Ada,L,a1@x.io,ENG-1,banana,,1", "A-2,Ada,L,a2@x.io,ENG-1,kiwi,,1"])
    r = run_import(store, account, path, ImportOptions(mapping=mapping), failed_rows_dir=tmp_path)
    assert {a.external_id: a.stage for a in rows(store, "applications", account)} == {"A-1": "offer"}
    assert [(x["_row"], x["_column"]) for x in _failed(r)] == [("2", "stage")]
    assert "stage 'nowhere' is not one of" in _failed(r)[0]["_error"]


def test_an_accounts_own_stages_replace_the_defaults(store, account, tmp_path) -> None:
    _set_values(store, account, {"applications.stage": ["new", "phone_call", "hired"]})
    path = apps_csv(tmp_path, ["A-1,Ada,L,a1@x.io,ENG-1,Phone Call,,1", "A-2,Ada,L,a2@x.io,ENG-1,interview,,1"])
    r = run_import(store, account, path, ImportOptions(default_stage="new"), failed_rows_dir=tmp_path)
    assert {a.external_id: a.stage for a in rows(store, "applications", account)} == {"A-1": "phone_call"}
    assert "stage 'interview' is not one of new, phone_call, hired" in _failed(r)[0]["_error"]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        pytest.param(
            {"default_stage": "limbo"},
            "default_stage 'limbo' is not a stage of applications: choose one of new, applied",
            id="default-stage",
        ),
        pytest.param(
            {"auto_advance": ({"when": {"field": "years_experience", "op": ">", "value": 3}, "stage": "moon"},)},
            "auto_advance rule 1's stage 'moon' is not a stage of applications",
            id="auto-advance",
        ),
    ],
)
def test_stage_options_outside_the_set_fail_before_anything_is_written(
    store, account, tmp_path, options, message
) -> None:
    path = apps_csv(tmp_path, ["A-1,Ada,L,a1@x.io,ENG-1,,,5"])
    with pytest.raises(ImportFailed, match=message):
        run_import(store, account, path, ImportOptions(**options), failed_rows_dir=tmp_path)
    assert count(store, "applications", account) == 0 and count(store, "users", account) == 0


def test_auto_advance_stages_fold_too(store, account, tmp_path) -> None:
    rule = {"when": {"field": "years_experience", "op": ">=", "value": 5}, "stage": "Phone Screen"}
    path = apps_csv(tmp_path, ["A-1,Ada,L,a1@x.io,ENG-1,,,7"])
    run_import(store, account, path, ImportOptions(auto_advance=(rule,)), failed_rows_dir=tmp_path)
    assert [a.stage for a in rows(store, "applications", account)] == ["screening"]


def test_job_statuses_are_checked_too(store, account, tmp_path) -> None:
    path = write(tmp_path / "jobs.csv", "Code,Title,Status\nJ-1,A,Open\nJ-2,B,on hold\nJ-3,C,banana\n")
    r = run_import(store, account, path, ImportOptions(entity="jobs"), failed_rows_dir=tmp_path)
    with store.engine.connect() as c:
        got = dict(
            c.execute(
                sa.select(schema.jobs.c.code, schema.jobs.c.status).where(schema.jobs.c.account_id == account)
            ).all()
        )
    assert got == {"J-1": "open", "J-2": "on_hold"}
    assert [(x["_row"], x["_column"]) for x in _failed(r)] == [("3", "status")]


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        pytest.param(
            {"stage": "offer"}, r"invalid import options: auto_advance rule 1 needs when: \{field, op", id="no-when"
        ),
        pytest.param({"when": {"field": "x", "op": "~", "value": 1}, "stage": "offer"}, "needs when", id="bad-op"),
        pytest.param(
            {"when": {"field": "x", "op": "==", "value": 1}},
            "invalid import options: auto_advance rule 1 needs a stage",
            id="no-stage",
        ),
    ],
)
def test_malformed_auto_advance_rules_are_refused_when_the_options_are_built(rule, message) -> None:
    with pytest.raises(ImportFailed, match=message):
        ImportOptions(auto_advance=(rule,))
