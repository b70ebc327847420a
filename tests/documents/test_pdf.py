"""PDF text extraction and its named failures, in bounded worker processes."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from connectors.documents import pool
from connectors.documents.pdf import Limits
from tests.documents import pdfgen

pytestmark = pytest.mark.slow
# .ci/run installs Tesseract: a machine without it fails these tests rather than skipping them
needs_tesseract = pytest.mark.usefixtures("tesseract_installed")


@pytest.fixture
def tesseract_installed() -> None:
    assert shutil.which("tesseract"), "Tesseract is not installed: apt-get install tesseract-ocr tesseract-ocr-eng"


def _read(*paths: Path, limits: Limits | None = None) -> dict[str, pool.Read]:
    return {r.path.name: r for r in pool.read_all(paths, "resume", limits or Limits(), workers=2)}


def _encrypted(tmp_path: Path, name: str, user: str, owner: str) -> Path:
    from pypdf import PdfReader, PdfWriter

    src = pdfgen.write(tmp_path / f"{name}-plain.pdf", pdfgen.resume_pdf(5))
    w = PdfWriter(clone_from=PdfReader(src))
    w.encrypt(user_password=user, owner_password=owner, algorithm="AES-256")
    out = tmp_path / name
    with open(out, "wb") as f:
        w.write(f)
    return out


def test_text_multi_page_and_two_column_pdfs_are_read(tmp_path: Path) -> None:
    multi = pdfgen.write(tmp_path / "multi.pdf", pdfgen.resume_pdf(1, pages=4))
    columns = pdfgen.write(
        tmp_path / "columns.pdf", pdfgen.build([[["Casey Rossi", "casey@example.com"], ["Skills", "Scala, Rust"]]])
    )

    got = _read(multi, columns)

    assert len(got["multi.pdf"].pages) == 4
    assert got["multi.pdf"].pages[3].startswith("Project 2:")
    assert got["columns.pdf"].fields["email"] == "casey@example.com"
    # the columns stay apart: the name is not run into the skills
    assert (got["columns.pdf"].fields["first_name"], got["columns.pdf"].fields["last_name"]) == ("Casey", "Rossi")
    assert [s.skill for s in got["columns.pdf"].skills] == ["Scala", "Rust"]


@pytest.mark.parametrize(
    ("name", "make", "kind", "says"),
    [
        ("empty.pdf", lambda p: pdfgen.write(p, b""), "empty", "0 bytes"),
        ("login.pdf", lambda p: pdfgen.write(p, b"\n<!doctype html><html><head>"), "not_pdf", "HTML page"),
        ("photo.pdf", lambda p: pdfgen.write(p, b"\x89PNG\r\n\x1a\n...."), "not_pdf", "an image"),
        ("cut.pdf", lambda p: pdfgen.write(p, pdfgen.resume_pdf(2)[:700]), "corrupt", "truncated"),
        (
            "garbage.pdf",
            lambda p: pdfgen.write(p, b"%PDF-1.7\n" + b"\x00garbage" * 50 + b"\n%%EOF\n"),
            "corrupt",
            "corrupt",
        ),
        ("huge-tree.pdf", lambda p: pdfgen.write(p, pdfgen.huge_page_tree(100_000)), "too_many_pages", "100,000 pages"),
        ("cyclic-tree.pdf", lambda p: pdfgen.write(p, pdfgen.huge_page_tree(3, cyclic=True)), "no_text", "no text"),
    ],
)
def test_unreadable_files_fail_with_their_reason(tmp_path: Path, name: str, make, kind: str, says: str) -> None:
    path = make(tmp_path / name)

    got = _read(path)[name]

    assert got.error is not None and got.error.kind == kind
    assert says in str(got.error)


def test_encrypted_pdfs_need_their_password_but_an_owner_password_alone_is_read(tmp_path: Path) -> None:
    locked = _encrypted(tmp_path, "locked.pdf", user="s3cret", owner="owner")
    owner_only = _encrypted(tmp_path, "owner-only.pdf", user="", owner="owner")

    got = _read(locked, owner_only)

    assert got["locked.pdf"].error.kind == "encrypted"
    assert "password-protected" in str(got["locked.pdf"].error)
    assert got["owner-only.pdf"].error is None
    assert got["owner-only.pdf"].fields["email"] == pdfgen.person(5)[2]


def test_a_page_too_big_to_render_in_the_memory_limit_fails_and_the_next_file_is_read(tmp_path: Path) -> None:
    scan = pdfgen.write(tmp_path / "scan.pdf", pdfgen.build([pdfgen.scanned_page(["Jordan Lee"])]))
    fine = pdfgen.write(tmp_path / "fine.pdf", pdfgen.resume_pdf(8))

    got = _read(scan, fine, limits=Limits(memory_bytes=400 * 2**20, ocr_dpi=2400))

    assert got["scan.pdf"].error.kind == "out_of_memory"
    assert got["fine.pdf"].error is None


@needs_tesseract
def test_a_scan_is_read_by_ocr(tmp_path: Path) -> None:
    lines = ["Avery Novak", "avery.novak@example.com", "Skills: Python, Kubernetes, SQL"]
    scan = pdfgen.write(tmp_path / "scan.pdf", pdfgen.build([pdfgen.scanned_page(lines)]))

    got = _read(scan)["scan.pdf"]

    assert got.error is None and got.ocr_pages == [0]
    assert got.fields["email"] == "avery.novak@example.com"
    assert {s.skill for s in got.skills} == {"Python", "Kubernetes", "SQL"}


def test_a_scan_without_tesseract_says_ocr_is_needed_and_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scan = pdfgen.write(tmp_path / "scan.pdf", pdfgen.build([pdfgen.scanned_page(["Avery Novak"])]))
    monkeypatch.setenv("PATH", str(tmp_path / "no-binaries-here"))

    got = _read(scan)["scan.pdf"]

    assert got.error.kind == "ocr_unavailable"
    assert "apt-get install tesseract-ocr" in str(got.error)


@needs_tesseract
def test_a_document_over_its_time_limit_is_stopped_and_the_others_go_on(tmp_path: Path) -> None:
    slow = pdfgen.write(
        tmp_path / "slow.pdf", pdfgen.build([pdfgen.scanned_page([f"Page {i} of a long scan"] * 20) for i in range(12)])
    )
    fine = pdfgen.write(tmp_path / "fine.pdf", pdfgen.resume_pdf(9))

    got = _read(slow, fine, limits=Limits(seconds=1))

    assert got["slow.pdf"].error.kind == "timeout"
    assert got["fine.pdf"].error is None


@needs_tesseract
def test_the_documents_queued_behind_one_that_is_stopped_are_read_by_a_fresh_worker(tmp_path: Path) -> None:
    slow = pdfgen.write(
        tmp_path / "slow.pdf", pdfgen.build([pdfgen.scanned_page([f"Page {i} of a long scan"] * 20) for i in range(12)])
    )
    fine = [pdfgen.write(tmp_path / f"r{i}.pdf", pdfgen.resume_pdf(i)) for i in range(3)]

    # one worker: the first fine file is sent to it while it reads the slow one
    got = {r.path.name: r for r in pool.read_all([slow, *fine], "resume", Limits(seconds=1), workers=1)}

    assert got["slow.pdf"].error.kind == "timeout"
    assert all(got[f.name].error is None for f in fine)


def test_workers_are_replaced_after_many_documents_and_every_document_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pool, "RECYCLE_AFTER", 3)
    files = [pdfgen.write(tmp_path / f"r{i}.pdf", pdfgen.resume_pdf(i)) for i in range(12)]

    got = _read(*files)

    assert sorted(got) == sorted(f.name for f in files)
    assert all(r.error is None and r.fields["email"] == pdfgen.person(int(n[1:-4]))[2] for n, r in got.items())


def test_workers_that_cannot_start_stop_the_reading_with_the_reason(tmp_path: Path) -> None:
    fine = pdfgen.write(tmp_path / "fine.pdf", pdfgen.resume_pdf(9))

    with pytest.raises(RuntimeError, match=r"do not start .*memory limit \(8 MiB\) too low"):
        _read(fine, limits=Limits(memory_bytes=8 * 2**20))
