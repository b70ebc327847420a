"""`bulkops documents import` runs document_import_job; `imports list --type applicants` shows it."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from connectors.store import RecordStore
from pipelines.cli import main
from pipelines.imports.engine import list_imports
from tests.documents import pdfgen

pytestmark = pytest.mark.slow


@pytest.fixture
def store_url(sqlite_url: str) -> str:
    # the command is plumbing over document_import_job; the engine tests cover both backends
    return sqlite_url


def test_documents_import_from_the_cli_makes_applicants_and_lists_them(cli_env: Path, store_url: str) -> None:
    folder = cli_env / "resumes"
    pdfgen.write(folder / "a.pdf", pdfgen.resume_pdf(61, ["Python"]))
    pdfgen.write(folder / "b.pdf", pdfgen.resume_pdf(62, ["SQL"]))
    pdfgen.write(folder / "login.pdf", b"<html><body>Sign in</body></html>")

    out = CliRunner().invoke(main, ["documents", "import", str(folder), "--type", "resume"])

    assert out.exit_code == 0, out.output
    assert "resumes/ (3 files)" in out.output
    assert "failed: not a PDF: login.pdf is an HTML page" in out.output
    store = RecordStore(store_url)
    try:
        [row] = list_imports(store, store.account_id(os.environ["BULKOPS_ACCOUNT"]))
    finally:
        store.dispose()
    assert (row["type"], row["created"], row["errors"]) == ("candidates", 2, 1)
    # history output says the users' word, the stored row the entity's name
    assert re.search(r"\bapplicants +resumes/ \(3 files\)", out.output), out.output
    listed = CliRunner().invoke(main, ["imports", "list", "--type", "applicants"])
    assert re.search(r"\bapplicants +resumes/ \(3 files\)", listed.output), listed.output
    assert "candidates" not in listed.output
    assert "resumes/" not in CliRunner().invoke(main, ["imports", "list", "--type", "jobs"]).output
    tasks = CliRunner().invoke(main, ["documents", "tasks"])
    assert "not_pdf" in tasks.output and tasks.output.count("completed") == 2


def test_urls_need_the_job_type(cli_env: Path) -> None:
    out = CliRunner().invoke(main, ["documents", "import", "--type", "resume", "--url", "https://example.com/j/1"])
    assert out.exit_code != 0
    assert "--url imports job postings: use --type job" in out.output
