"""Product text (README, docs, code) says what bulkops does in its own words.

It does not cite the documents or work sessions it came from, and a word has one meaning: `jobs`
are job postings, so the bulk-job commands are `bulkops bulk-jobs`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

CITATIONS = re.compile(r"\bseed 0\d\d\b|\bthe brief\b|\bthe issue's\b|\bthis session\b", re.IGNORECASE)
# the bulk-job commands under their former name, which reads as "job postings"
OLD_BULK_JOB_COMMAND = re.compile(r"\bbulkops jobs\b")


def _python_files(folder: Path) -> Iterator[Path]:
    """FOLDER's .py files, hidden folders left out: a benchmark's own .venv holds other projects' code."""
    for parent, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        yield from (Path(parent) / name for name in sorted(files) if name.endswith(".py"))


def _product_files() -> Iterator[Path]:
    yield ROOT / "README.md"
    yield ROOT / "BENCHMARKS.md"
    yield from sorted((ROOT / "docs").glob("*.md"))
    for folder in ("pipelines", "connectors", "resources", "benchmarks"):
        yield from _python_files(ROOT / folder)


def _lines_matching(pattern: re.Pattern[str]) -> list[str]:
    return [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in _product_files()
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if pattern.search(line)
    ]


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        pytest.param(CITATIONS, [], id="no-citations-of-source-documents"),
        # the one place that names it: the hidden alias kept for scripts
        pytest.param(OLD_BULK_JOB_COMMAND, ["pipelines/cli.py"], id="bulk-jobs-command-name"),
    ],
)
def test_product_text(pattern: re.Pattern[str], expected: list[str]) -> None:
    assert sorted({hit.split(":", 1)[0] for hit in _lines_matching(pattern)}) == expected, _lines_matching(pattern)


def test_the_patterns_find_what_they_look_for() -> None:
    # the checks above pass on an empty tree too: prove they read real files and match real text
    assert len(list(_product_files())) > 50
    assert CITATIONS.search("as Seed 001 asks") and CITATIONS.search("after this session's changes")
    assert OLD_BULK_JOB_COMMAND.search("run `bulkops jobs list`")
