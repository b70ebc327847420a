"""Email normalisation: the fast Arrow path and email-validator agree on every input."""

from __future__ import annotations

import pyarrow as pa
from hypothesis import example, given
from hypothesis import strategies as st

from pipelines.imports.validation import normalise_email, normalise_emails

ATEXT = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+/=?^_`{|}~-"
LABEL = st.from_regex(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?", fullmatch=True)
TLD = st.from_regex(r"[A-Za-z]{2,10}", fullmatch=True).filter(
    lambda t: t.lower() not in ("arpa", "invalid", "local", "localhost", "onion", "test")
)
LOCAL = st.lists(st.text(ATEXT, min_size=1, max_size=30), min_size=1, max_size=4).map(".".join)
ADDRESS = st.builds(
    lambda local, labels, tld: f"{local}@{'.'.join([*labels, tld])}",
    LOCAL,
    st.lists(LABEL, min_size=1, max_size=3),
    TLD,
)
INVISIBLE = st.sampled_from(["\u200b", "\u200d", "\ufeff", "\u00a0", " ", "\t", "\u2060"])


def _one(value: str) -> tuple[str | None, str | None, bool]:
    """(stored email, duplicate key, rejected) through the import's Arrow path."""
    email, key, errors = normalise_emails(pa.array([value], pa.string()))
    return email[0].as_py(), key[0].as_py(), bool(errors)


@given(ADDRESS)
@example("a" * 65 + "@example.com")  # local part over 64 characters
@example("x@" + ".".join(["a" * 63] * 4) + ".com")  # domain over 253 characters
def test_the_fast_path_accepts_exactly_what_email_validator_accepts(value: str) -> None:
    address, why = normalise_email(value)
    email, key, rejected = _one(value)
    assert rejected == (address is None), (value, why)
    if address is not None:
        assert key == address.lower()
        assert email.lower() == address.lower()


@given(st.text(max_size=80))
def test_any_text_is_an_address_or_a_reason_never_an_exception(value: str) -> None:
    address, why = normalise_email(value)
    assert (address is None) != (why is None)
    _, key, rejected = _one(value)
    if value.strip() and address is None:
        assert rejected
    if address is not None:
        assert key == address.lower()


@given(ADDRESS, st.lists(INVISIBLE, max_size=3), st.lists(INVISIBLE, max_size=3))
def test_invisible_characters_and_spaces_around_do_not_change_the_key(
    value: str, before: list[str], after: list[str]
) -> None:
    plain = _one(value)
    wrapped = _one("".join(before) + value + "".join(after))
    assert wrapped[1] == plain[1]
    assert wrapped[2] == plain[2]


@given(ADDRESS, st.text(ATEXT.replace("<", "").replace(">", "")[:52] + " ", min_size=1, max_size=20))
def test_a_display_name_form_gives_the_address_inside_it(value: str, name: str) -> None:
    plain = _one(value)
    named = _one(f"{name.strip() or 'X'} <{value}>")
    assert named[1] == plain[1]


@given(ADDRESS)
def test_normalising_twice_changes_nothing(value: str) -> None:
    once, _ = normalise_email(value)
    if once is not None:
        assert normalise_email(once) == (once, None)
        assert _one(once)[1] == once.lower()
