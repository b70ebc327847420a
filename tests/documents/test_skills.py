"""The skills matcher: canonical names from the taxonomy, true and false positives, evidence."""

from __future__ import annotations

import pytest

from connectors.documents.data.build_skills import clean
from connectors.documents.skills import matcher


def _found(text: str) -> list[str]:
    return [f.skill for f in matcher().find([text])]


@pytest.mark.parametrize(
    ("upstream", "canonical", "alias"),
    [
        ("Structured query language SQL", "SQL", "Structured query language"),
        ("Google Angular", "Angular", "Google Angular"),
        ("Microsoft Excel", "Excel", "Microsoft Excel"),
        ("Amazon Web Services AWS software", "AWS", "Amazon Web Services"),
        ("Hypertext markup language HTML", "HTML", "Hypertext markup language"),
        ("Alteryx software", "Alteryx", "Alteryx software"),
        ("Microsoft Word", "Microsoft Word", None),
        ("Accounting software", "Accounting software", None),
    ],
)
def test_upstream_names_become_clean_canonical_names_with_aliases(
    upstream: str, canonical: str, alias: str | None
) -> None:
    name, aliases = clean(upstream)
    assert name == canonical
    if alias:
        assert alias in aliases


@pytest.mark.parametrize(
    ("text", "skills"),
    [
        ("Skills: Python, Go, SQL", ["Python", "Go", "SQL"]),
        ("C++, C#, .NET and Node.js", ["C++", "C#", ".NET", "Node.js"]),
        ("Structured query language and Microsoft Excel", ["SQL", "Excel"]),
        ("Google Angular front ends", ["Angular"]),
        ("Ruby on Rails; PostgreSQL (Postgres)", ["Ruby on Rails", "PostgreSQL"]),
        ("Amazon Web Services\nand K8s", ["AWS", "Kubernetes"]),
        ("Statistics in R, SAS and Excel.", ["R", "SAS", "Excel"]),
        ("Golang services", ["Go"]),
        ("react and REACT", []),
        ("React", ["React"]),
        ("Machine learning with PyTorch and scikit-learn", ["PyTorch", "Scikit-learn"]),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_true_positives(text: str, skills: list[str]) -> None:
    assert _found(text) == skills


@pytest.mark.parametrize(
    ("text", "absent"),
    [
        ("JavaScript and TypeScript developer", "Java"),
        ("We go to market fast. Go for it.", "Go"),
        ("Ready, set, go!", "Go"),
        ("Research and Reporting", "R"),
        ("C-level stakeholders", "C"),
        ("ASP.NET MVC", ".NET"),
        ("She will excel at teamwork. Excel at everything", "Excel"),
        ("Rustic furniture", "Rust"),
        ("Scalable systems", "Scala"),
        ("Javanese cuisine", "Java"),
        ("Pythonic code", "Python"),
    ],
)
def test_false_positives_are_not_found(text: str, absent: str) -> None:
    assert absent not in _found(text)


def test_evidence_is_the_first_place_and_mentions_are_counted() -> None:
    pages = ["Summary\nBuilt services.", "Skills\nPython, SQL\nMore Python and python"]

    found = {f.skill: f for f in matcher().find(pages)}

    py = found["Python"]
    assert (py.page, pages[1][py.start : py.end], py.mentions) == (2, "Python", 3)
