from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from connectors.store import AccountNotFound, RecordStore, changes, normalize_url
from connectors.store import schema as s


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        pytest.param("postgresql://u@h/db", "postgresql+psycopg://u@h/db", id="plain-postgresql"),
        pytest.param("postgres://u@h/db", "postgresql+psycopg://u@h/db", id="heroku-style"),
        pytest.param("postgresql+psycopg://u@h/db", "postgresql+psycopg://u@h/db", id="explicit-driver"),
        pytest.param("sqlite:///var/x.db", "sqlite:///var/x.db", id="sqlite"),
    ],
)
def test_normalize_url_picks_psycopg3(given: str, expected: str) -> None:
    assert normalize_url(given) == expected


def test_ensure_account_is_idempotent_and_lookup_names_the_fix(store: RecordStore) -> None:
    slug = f"acme-{uuid.uuid4().hex[:6]}"
    first = store.ensure_account(slug, "Acme")
    assert store.ensure_account(slug) == first
    assert store.account_id(slug) == first
    with pytest.raises(AccountNotFound, match="bulkops accounts create nope"):
        store.account_id("nope")


def test_records_round_trip_uuid_json_and_timestamps(store: RecordStore, account: uuid.UUID) -> None:
    candidate, job, application = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    with store.begin() as conn:
        conn.execute(
            s.users.insert().values(id=candidate, account_id=account, email="A@x.io", email_normalized="a@x.io")
        )
        conn.execute(s.jobs.insert().values(id=job, account_id=account, code="ENG-1", title="Engineer"))
        conn.execute(
            s.applications.insert().values(
                id=application, account_id=account, candidate_id=candidate, job_id=job, data={"years": 3, "notes": "é"}
            )
        )
    with store.begin() as conn:
        row = conn.execute(sa.select(s.applications).where(s.applications.c.id == application)).one()
    assert row.candidate_id == candidate
    assert row.data == {"years": 3, "notes": "é"}
    assert row.stage == "applied" and row.status == "active"
    assert row.created_at is not None and row.deleted_at is None


def test_one_email_per_account_but_the_same_email_in_two_accounts(store: RecordStore, account: uuid.UUID) -> None:
    other = store.ensure_account(f"other-{uuid.uuid4().hex[:6]}")
    with store.begin() as conn:
        for acc in (account, other):
            conn.execute(s.users.insert().values(id=uuid.uuid4(), account_id=acc, email_normalized="same@x.io"))
    with pytest.raises(sa.exc.IntegrityError), store.begin() as conn:
        conn.execute(s.users.insert().values(id=uuid.uuid4(), account_id=account, email_normalized="same@x.io"))


@pytest.mark.parametrize(
    "statement", ["UPDATE audit_log SET actor = 'mallory'", "DELETE FROM audit_log"], ids=["update", "delete"]
)
def test_audit_log_is_append_only(store: RecordStore, account: uuid.UUID, statement: str) -> None:
    entity = uuid.uuid4()
    with store.begin() as conn:
        cs = changes.open_change_set(conn, account_id=account, kind="document_import", actor="alice")
        rows = [("applications", entity, {"status": "active"}, {"status": "rejected"})]
        changes.write_audit_rows(conn, cs, "status_update", rows, now=datetime.now(UTC))
    with pytest.raises(sa.exc.DBAPIError, match="append-only"), store.begin() as conn:
        conn.execute(
            sa.text(statement + " WHERE entity_id = :e"), {"e": entity if store.dialect == "postgresql" else entity.hex}
        )
    with store.begin() as conn:
        rows = conn.execute(sa.select(s.audit_log).where(s.audit_log.c.entity_id == entity)).all()
    assert [(r.actor, r.before, r.after) for r in rows] == [("alice", {"status": "active"}, {"status": "rejected"})]


def test_bulk_job_keeps_seed_fields_and_rejects_unknown_status(store: RecordStore, account: uuid.UUID) -> None:
    ids = [uuid.uuid4() for _ in range(3)]
    job = uuid.uuid4()
    with store.begin() as conn:
        changes.open_change_set(conn, id=job, account_id=account, kind="bulk_job")
        conn.execute(
            s.bulk_jobs.insert().values(
                id=job,
                account_id=account,
                entity_type="applications",
                operation="delete",
                entity_ids=ids,
                total_count=3,
            )
        )
        row = conn.execute(sa.select(s.bulk_jobs).where(s.bulk_jobs.c.id == job)).one()
    assert [uuid.UUID(str(i)) for i in row.entity_ids] == ids
    assert (row.status, row.processed_count, row.failed_count, row.error_message) == ("pending", 0, 0, None)
    with pytest.raises(sa.exc.IntegrityError), store.begin() as conn:
        conn.execute(s.bulk_jobs.update().where(s.bulk_jobs.c.id == job).values(status="exploded"))


def test_json_columns_accept_uuids_and_datetimes(store: RecordStore, account: uuid.UUID) -> None:
    import datetime as dt

    entity = uuid.uuid4()
    when = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    with store.begin() as conn:
        cs = changes.open_change_set(conn, account_id=account, kind="document_import", actor="bob")
        rows = [("applications", entity, {"job_id": entity, "applied_at": when}, None)]
        changes.write_audit_rows(conn, cs, "x", rows, now=datetime.now(UTC))
        before = conn.scalar(sa.select(s.audit_log.c.before).where(s.audit_log.c.entity_id == entity))
    assert before == {"job_id": str(entity), "applied_at": "2026-01-02T03:04:05+00:00"}
