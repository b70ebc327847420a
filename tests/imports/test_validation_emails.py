"""Email identity: one person is one candidate however the address is written; non-addresses are rejected."""

from __future__ import annotations

import csv

import email_validator
import pyarrow as pa
import pytest
from email_validator import EmailNotValidError, validate_email

from pipelines.imports.engine import ImportOptions, run_import
from pipelines.imports.validation import SPECIAL_USE_DOMAINS, normalise_emails
from tests.imports.helpers import count, rows, write

# three real people, each written two ways
SIX_WAYS = [
    "zerowidth@example.com",
    "zero\u200bwidth@example.com",
    "nb@example.com",
    "nb\u00a0@example.com",
    "John Doe <john@example.com>",
    "john@example.com",
]


def test_three_people_written_six_ways_become_three_candidates(store, account, tmp_path) -> None:
    path = write(tmp_path / "people.csv", "Email\n" + "".join(f'"{e}"\n' for e in SIX_WAYS))
    r = run_import(store, account, path, ImportOptions(entity="candidates"), failed_rows_dir=tmp_path)
    # the second spelling of each person matches the first and changes nothing: unchanged, not updated
    assert (r.created, r.updated, r.skipped, r.errors) == (3, 0, 3, 0)
    assert count(store, "users", account) == 3
    people = rows(store, "users", account, "email_normalized")
    assert [u.email_normalized for u in people] == ["john@example.com", "nb@example.com", "zerowidth@example.com"]
    assert all(u.email == u.email_normalized for u in people)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        pytest.param("mailto:m@example.com", "a mailto: link, not an address: write the address alone", id="mailto"),
        pytest.param("x@example.com.", "an email address cannot end with a period", id="trailing-dot"),
        pytest.param("no-at-sign.example.com", "an email address must have an @-sign", id="no-at"),
        pytest.param("a@@example.com", "", id="two-at"),
        pytest.param("a@localhost", "", id="no-domain"),
        pytest.param("a@b.test", "special-use or reserved name", id="special-use"),
        pytest.param("Jane <jane@example.com", "", id="unclosed-bracket"),
    ],
)
def test_what_is_not_an_address_is_rejected_with_the_reason(store, account, tmp_path, value, reason) -> None:
    path = write(tmp_path / "bad.csv", f'Email\nok@example.com\n"{value}"\n')
    r = run_import(store, account, path, ImportOptions(entity="candidates"), failed_rows_dir=tmp_path)
    assert (r.created, r.errors) == (1, 1)
    with open(r.failed_rows_path, newline="") as f:
        [bad] = list(csv.DictReader(f))
    assert (bad["_row"], bad["_column"]) == ("2", "email")
    assert bad["_error"].startswith(f"invalid email {value!r}: ") and reason in bad["_error"]


CASES = [
    "a@example.com",
    "A.B+tag@Example.COM",
    "o'neil@example.ie",
    "x_y-z@sub.example.co.uk",
    "a..b@example.com",
    ".a@example.com",
    "a.@example.com",
    "a@-example.com",
    "a@example-.com",
    "a@example",
    "a@example.c",
    "a@123.com",
    "a@example.local",
    "a@ex_ample.com",
    '"quoted"@example.com',
    "a@[127.0.0.1]",
    "a" * 65 + "@example.com",
    "a@" + "b" * 64 + ".com",
    "ünï@example.com",
    "a@bücher.de",
    "a b@example.com",
    " a@example.com ",
]


@pytest.mark.parametrize("value", CASES)
def test_the_fast_path_agrees_with_email_validator(value: str) -> None:
    email, key, errors = normalise_emails(pa.array([value]))
    try:
        expected = validate_email("".join(value.split()), check_deliverability=False).normalized
    except EmailNotValidError:
        expected = None
    if expected is None:
        assert errors and email[0].as_py() is None
    else:
        assert not errors
        assert email[0].as_py().lower() == expected.lower() and key[0].as_py() == expected.lower()


def test_the_fast_path_knows_the_special_use_domains_email_validator_refuses() -> None:
    assert set(SPECIAL_USE_DOMAINS) == set(email_validator.SPECIAL_USE_DOMAIN_NAMES)
