"""Status and stage values come from the account's value sets, checked when a job is created."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from connectors.store import (
    RecordStore,
    accounts,
    make_engine,
    migrate,
    registry,
    schema,
)
from pipelines.bulk import service
from pipelines.cli import main


def _create(store, account, **kwargs) -> dict:
    return service.create_job(store, account, created_by=None, entity_ids=[uuid.uuid4()], **kwargs)


def _jobs(store, account) -> int:
    t = schema.bulk_jobs
    with store.engine.connect() as conn:
        return conn.scalar(sa.select(sa.func.count()).select_from(t).where(t.c.account_id == account))


@pytest.mark.parametrize(
    ("entity_type", "operation", "params", "field", "allowed"),
    [
        pytest.param(
            "applications",
            "status_update",
            {"status": "banana"},
            "status",
            registry.APPLICATION_STATUSES,
            id="application-status",
        ),
        pytest.param(
            "applications",
            "stage_transition",
            {"stage": "banana"},
            "stage",
            registry.APPLICATION_STAGES,
            id="application-stage",
        ),
        pytest.param(
            "contracts",
            "status_update",
            {"status": "banana"},
            "status",
            registry.CONTRACT_STATUSES,
            id="contract-status",
        ),
        pytest.param(
            "contracts",
            "create",
            {"template": "t", "status": "banana"},
            "status",
            registry.CONTRACT_STATUSES,
            id="contract-create-status",
        ),
        pytest.param(
            "jobs",
            "field_update",
            {"fields": {"status": "banana"}},
            "fields.status",
            registry.JOB_STATUSES,
            id="job-field-update-status",
        ),
    ],
)
def test_a_value_outside_the_set_is_refused_naming_the_allowed_values(
    store, account, entity_type, operation, params, field, allowed
) -> None:
    with pytest.raises(service.InvalidRequest) as info:
        _create(store, account, entity_type=entity_type, operation=operation, params=params)
    assert info.value.http_status == 422
    assert info.value.details == {"field": field, "value": "banana", "allowed": list(allowed)}
    assert "'banana'" in info.value.message and ", ".join(allowed) in info.value.message
    assert _jobs(store, account) == 0


def test_values_are_matched_ignoring_case_and_stored_as_declared(seed, store, account) -> None:
    ids = seed.applications(1)
    job = service.create_job(
        store,
        account,
        created_by=None,
        entity_type="applications",
        operation="status_update",
        entity_ids=ids,
        params={"status": " On_Hold "},
    )
    assert job["params"] == {"status": "on_hold"}
    service.run_job_now(store, account, uuid.UUID(job["id"]))
    assert seed.rows(schema.applications, ids)[ids[0]].status == "on_hold"
    # fields without a value set are taken as given
    kept = _create(store, account, entity_type="jobs", operation="field_update", params={"fields": {"title": " Dev "}})
    assert kept["params"] == {"fields": {"title": " Dev "}}


def test_an_account_set_replaces_the_defaults_and_reset_restores_them(store, account) -> None:
    other = store.ensure_account(f"o-{uuid.uuid4().hex[:10]}")
    custom = accounts.set_value_set(store, account, "applications.stage", ["Sourced", "Phone Screen", "sourced"])
    assert custom == ("applications.stage", ("Sourced", "Phone Screen"), "account")
    assert _create(
        store, account, entity_type="applications", operation="stage_transition", params={"stage": "phone screen"}
    )["params"] == {"stage": "Phone Screen"}
    with pytest.raises(service.InvalidRequest) as info:
        _create(store, account, entity_type="applications", operation="stage_transition", params={"stage": "offer"})
    assert info.value.details["allowed"] == ["Sourced", "Phone Screen"]
    # another account keeps the defaults
    _create(store, other, entity_type="applications", operation="stage_transition", params={"stage": "offer"})
    with pytest.raises(service.InvalidRequest):
        _create(store, other, entity_type="applications", operation="stage_transition", params={"stage": "Sourced"})
    assert accounts.reset_value_set(store, account, "applications.stage").source == "default"
    _create(store, account, entity_type="applications", operation="stage_transition", params={"stage": "offer"})
    with store.engine.connect() as conn:
        assert accounts.settings(conn, account) == {"value_sets": {}}


@pytest.mark.parametrize(
    ("key", "values", "message"),
    [
        pytest.param("applications.source", ["a"], "has no value set", id="no-set"),
        pytest.param("planets.status", ["a"], "unknown entity 'planets'", id="entity"),
        pytest.param("stage", ["a"], "is not ENTITY.FIELD", id="shape"),
        pytest.param("applications.status", [" "], "empty values", id="empty"),
        pytest.param("applications.status", ["x" * 33], "longer than 32", id="too-long"),
        pytest.param("applications.status", [], "at least one value", id="none"),
    ],
)
def test_bad_value_sets_are_refused(store, account, key, values, message) -> None:
    with pytest.raises(accounts.ValueSetError, match=message):
        accounts.set_value_set(store, account, key, values)


def test_move_stage_automations_are_checked_at_create_and_at_run(seed, store, account) -> None:
    seed.automation("to-limbo", "move_stage", {"stage": "limbo"})
    seed.automation("to-offer", "move_stage", {"stage": "offer"})
    ids = seed.applications(2)
    with pytest.raises(service.InvalidRequest) as info:
        service.create_job(
            store,
            account,
            created_by=None,
            entity_type="applications",
            operation="trigger_automations",
            entity_ids=ids,
            params={"automations": ["to-limbo"]},
        )
    assert info.value.details["automation"] == "to-limbo" and info.value.details["value"] == "limbo"
    job = service.create_job(
        store,
        account,
        created_by=None,
        entity_type="applications",
        operation="trigger_automations",
        entity_ids=ids,
        params={"automations": ["to-offer"]},
    )
    # the account's stages change before the job runs: no record moves to a stage no longer allowed
    accounts.set_value_set(store, account, "applications.stage", ["applied", "interview"])
    done = service.run_job_now(store, account, uuid.UUID(job["id"]))
    assert (done["status"], done["failed_count"]) == ("failed", 2)
    assert "'offer' is not a stage of applications (allowed: applied, interview)" in done["error_message"]
    assert {r.stage for r in seed.rows(schema.applications, ids).values()} == {"applied"}


@pytest.fixture
def cli_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> RecordStore:
    monkeypatch.setenv("BULKOPS_VAR_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "var" / "dagster"))
    engine = make_engine()
    migrate.upgrade(engine)
    engine.dispose()
    store = RecordStore()
    yield store
    store.dispose()


def test_cli_shows_sets_and_resets_an_accounts_values(cli_store: RecordStore, tmp_path: Path) -> None:
    account = cli_store.ensure_account("acme")
    runner = CliRunner()
    shown = runner.invoke(main, ["accounts", "values", "show", "acme"])
    assert shown.exit_code == 0, shown.output
    assert shown.output.splitlines() == [
        f"{key} (default): {', '.join(registry.value_set(*key.split('.')))}" for key in accounts.value_set_keys()
    ]

    out = runner.invoke(main, ["accounts", "values", "set", "acme", "jobs.status", "open", "closed"])
    assert (out.exit_code, out.output) == (0, "jobs.status (account): open, closed\n")
    with cli_store.engine.connect() as conn:
        assert accounts.settings(conn, account) == {"value_sets": {"jobs.status": ["open", "closed"]}}
    shown = runner.invoke(main, ["accounts", "values", "show", "acme", "jobs.status"])
    assert shown.output == "jobs.status (account): open, closed\n"

    ids = tmp_path / "ids.txt"
    ids.write_text(f"{uuid.uuid4()}\n")
    refused = runner.invoke(
        main,
        [
            "jobs",
            "create",
            "jobs",
            "field_update",
            "--account",
            "acme",
            "--ids",
            str(ids),
            "--params",
            '{"fields": {"status": "draft"}}',
        ],
    )
    assert refused.exit_code == 1 and "Traceback" not in refused.output
    assert refused.output.count("\n") == 1
    assert "params.fields.status 'draft' is not a status of jobs: use one of open, closed" in refused.output

    out = runner.invoke(main, ["accounts", "values", "reset", "acme", "jobs.status"])
    assert out.output.startswith("jobs.status (default): draft, open")

    bad = runner.invoke(main, ["accounts", "values", "set", "acme", "jobs.title", "x"])
    assert bad.exit_code == 2 and bad.output.count("\n") == 1 and "jobs.title has no value set" in bad.output
