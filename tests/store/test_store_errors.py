"""describe_error tells real database failures in one sentence, without SQL or parameters."""

from __future__ import annotations

import socket
import uuid

import pytest
import sqlalchemy as sa

from connectors.store import RecordStore, schema
from connectors.store.errors import add_context, describe_error, describe_url, is_unreachable


def no_statement(text: str) -> None:
    assert "\n" not in text and "[SQL" not in text and "INSERT" not in text and "parameters" not in text, text
    assert "secret-value" not in text, text


def test_a_refused_write_names_the_problem_and_the_context(store: RecordStore, account: uuid.UUID) -> None:
    users = schema.users
    row = {
        "id": uuid.uuid4(),
        "account_id": account,
        "email": "x@example.com",
        "email_normalized": "x@example.com",
        "first_name": "secret-value",
    }
    with store.begin() as conn:
        conn.execute(users.insert().values(**row))
    try:
        with store.begin() as conn:
            conn.execute(users.insert().values(**row))
    except sa.exc.IntegrityError as exc:
        add_context(exc, "the batch at rows 1-2")
        text = describe_error(exc, url=store.engine.url)
    else:
        pytest.fail("the duplicate id was accepted")

    assert text.startswith("the record store refused the batch at rows 1-2: "), text
    assert ("duplicate key value violates unique constraint" in text) or ("UNIQUE constraint failed" in text), text
    assert not is_unreachable(sa.exc.IntegrityError("x", {}, Exception("y")))
    no_statement(text)


@pytest.mark.postgres
def test_a_value_too_long_names_the_type_on_postgresql(pg_url: str) -> None:
    store = RecordStore(pg_url)
    account = store.ensure_account(f"t-{uuid.uuid4().hex[:10]}")
    try:
        with store.begin() as conn:
            conn.execute(
                schema.users.insert().values(
                    id=uuid.uuid4(), account_id=account, phone="9" * 65, first_name="secret-value"
                )
            )
    except sa.exc.DataError as exc:
        text = describe_error(exc, context="the batch at rows 20001-40000")
    else:
        pytest.fail("a 65-character phone was accepted")
    finally:
        store.dispose()

    assert (
        text == "the record store refused the batch at rows 20001-40000: value too long for type character varying(64)"
    )


@pytest.mark.parametrize(
    "url", ["postgresql+psycopg://postgres@127.0.0.1:{port}/bulkops", "sqlite:////nonexistent-dir/{port}/bulkops.db"]
)
def test_an_unreachable_record_store_is_named_by_where_it_is(url: str) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = url.format(port=port)
    engine = sa.create_engine(url)
    try:
        with pytest.raises(sa.exc.OperationalError) as caught, engine.connect():
            pass
    finally:
        engine.dispose()
    exc = caught.value
    text = describe_error(exc, url=url)
    assert is_unreachable(exc)

    assert text.startswith(f"cannot reach the record store at {describe_url(url)}: "), text
    assert text.endswith(("Connection refused", "unable to open database file")), text
    no_statement(text)


@pytest.mark.postgres
def test_a_lost_connection_says_so_and_during_what(pg_url: str) -> None:
    engine = sa.create_engine(RecordStore(pg_url).engine.url)
    try:
        with engine.connect() as victim, engine.connect() as admin:
            pid = victim.execute(sa.text("SELECT pg_backend_pid()")).scalar()
            admin.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            try:
                victim.execute(sa.text("SELECT :v"), {"v": "secret-value"})
            except sa.exc.DBAPIError as exc:
                add_context(exc, "the batch at rows 1-5000")
                text = describe_error(exc, url=engine.url)
                unreachable = is_unreachable(exc)
            else:
                pytest.fail("the terminated connection answered")
    finally:
        engine.dispose()

    assert unreachable
    assert text.startswith(
        f"lost the connection to the record store at {describe_url(engine.url)} during the batch at rows 1-5000: "
    )
    assert "terminating connection" in text or "server closed the connection" in text, text
    no_statement(text)


def test_other_errors_keep_their_first_line() -> None:
    assert describe_error(KeyError("missing")) == "KeyError: 'missing'"
    assert describe_error(RuntimeError("first line\nsecond line")) == "RuntimeError: first line"
    assert describe_url("postgresql://u:pw@db.internal:6543/prod") == "PostgreSQL db.internal:6543/prod"
