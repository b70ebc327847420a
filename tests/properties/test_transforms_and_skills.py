"""Mapping transforms and the skills matcher on any text."""

from __future__ import annotations

import re

import pyarrow as pa
import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st

from connectors.documents.skills import load_rows, matcher
from pipelines.imports.mapping import TRANSFORMS, _transform

SPACES = " \t\n\r\u00a0\u2003\u3000\u2028\u202f"
TEXT = st.text(st.characters(exclude_categories=("Cs",)) | st.sampled_from(SPACES), max_size=40)


def _apply(name: str, values: list[str | None]) -> list[str | None]:
    return _transform(pa.array(values, pa.string()), name).to_pylist()


@pytest.mark.parametrize("name", TRANSFORMS)
@given(values=st.lists(st.none() | TEXT, max_size=10))
def test_a_transform_keeps_rows_and_nulls_and_applying_it_twice_changes_nothing(name: str, values: list) -> None:
    once = _apply(name, values)
    assert [v is None for v in once] == [v is None for v in values]
    if name not in ("title",):  # "ǅ" title-cases differently the second time in Unicode; no key uses it
        assert _apply(name, once) == once


@given(TEXT)
@example(" \x0b")  # a vertical tab: not in RE2's \s
def test_collapse_whitespace_leaves_no_run_of_spaces_of_any_kind(value: str) -> None:
    (out,) = _apply("collapse_whitespace", [value])
    assert not re.search(r"\s\s", out)
    assert out.split() == value.split()


@given(TEXT)
def test_a_slug_is_lowercase_ascii_words_joined_by_underscores(value: str) -> None:
    (out,) = _apply("slug", [value])
    assert re.fullmatch(r"([0-9a-z]+(_[0-9a-z]+)*)?", out), out


@pytest.mark.parametrize(
    ("value", "slug"),
    [("In Review", "in_review"), ("Café Olé", "cafe_ole"), ("Entrevista Técnica", "entrevista_tecnica")],
)
def test_a_slug_keeps_the_letters_of_accented_words(value: str, slug: str) -> None:
    assert _apply("slug", [value]) == [slug]


@given(TEXT)
def test_digits_keep_only_digits_and_plus(value: str) -> None:
    (out,) = _apply("digits", [value])
    assert re.fullmatch(r"[0-9+]*", out)


# --- skills

ROWS = load_rows()
PLAIN = [(name, spelling) for name, aliases, _s, _u, mode in ROWS if mode == "plain" for spelling in (name, *aliases)]
ALL_NAMES = sorted({name for name, *_ in ROWS})
OWNER = {name.lower(): name for name in ALL_NAMES}
for _name, _aliases, *_ in ROWS:
    for _alias in _aliases:
        OWNER.setdefault(_alias.lower(), _name)
WORDISH = st.from_regex(r"[a-z]{2,6}", fullmatch=True)


def _found(text: str) -> set[str]:
    return {f.skill for f in matcher().find([text])}


@given(st.sampled_from(PLAIN), st.sampled_from(["Skills: {}, Docker", "- {}\n", "Worked with {} daily.", "({})"]))
def test_a_skill_written_as_a_word_is_found_whatever_its_case(skill: tuple[str, str], template: str) -> None:
    name, spelling = skill
    # a spelling that is also a skill's own name means that skill (".NET Framework", not ".NET");
    # an alias listed under two skills means the first of them
    name = OWNER[spelling.lower()]
    for written in (spelling, spelling.lower(), spelling.upper()):
        assume(written.lower() == spelling.lower())  # case folding keeps the length of every taxonomy name
        text = template.format(written)
        assert name in _found(text), text


@given(st.sampled_from([p for p in PLAIN if " " not in p[1]]), WORDISH)
def test_a_skill_is_never_found_inside_a_longer_word(skill: tuple[str, str], extra: str) -> None:
    name, spelling = skill
    if spelling[-1].isalnum():
        text = f"Skills: {spelling}{extra} and more"
        assert name not in _found(text) or f"{spelling}{extra}".lower() in {s.lower() for s in ALL_NAMES}, text
    if spelling[0].isalnum():
        text = f"Skills: {extra}{spelling} and more"
        assert name not in _found(text) or f"{extra}{spelling}".lower() in {s.lower() for s in ALL_NAMES}, text


@given(st.lists(TEXT, min_size=1, max_size=3))
def test_every_found_span_holds_the_text_it_names(pages: list[str]) -> None:
    for f in matcher().find(pages):
        assert pages[f.page - 1][f.start : f.end] == f.text
        assert f.mentions >= 1
        assert f.skill in ALL_NAMES
