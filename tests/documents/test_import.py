"""Resume and job-description PDFs imported as one change set: records, documents, skills, history, rollback."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from connectors.store import RecordStore, schema
from connectors.store import documents as store_docs
from pipelines.documents import engine
from pipelines.documents.engine import import_documents
from pipelines.imports.engine import list_imports, rollback_import
from tests.documents import pdfgen

pytestmark = pytest.mark.slow


def _import(store: RecordStore, account: uuid.UUID, tmp_path: Path, *paths: Path, kind: str = "resume", **kw):
    return import_documents(
        store,
        account,
        kind=kind,
        paths=paths,
        documents_dir=tmp_path / "stored",
        failed_rows_dir=tmp_path / "failed",
        workers=2,
        **kw,
    )


def _users(store: RecordStore, account: uuid.UUID) -> list:
    u = schema.users
    with store.engine.connect() as c:
        return c.execute(sa.select(u).where(u.c.account_id == account).order_by(u.c.email)).all()


def _skills(store: RecordStore, candidate_id: uuid.UUID) -> list[str]:
    with store.engine.connect() as c:
        return [s["name"] for s in store_docs.skills_of(c, "resume", candidate_id)]


def test_resumes_become_applicants_with_skills_and_evidence(
    store: RecordStore, account: uuid.UUID, tmp_path: Path
) -> None:
    folder = tmp_path / "resumes"
    pdfgen.write(folder / "one.pdf", pdfgen.resume_pdf(1, ["Python", "Go", "Structured query language"]))
    pdfgen.write(folder / "two.pdf", pdfgen.resume_pdf(2, ["JavaScript", "C++", ".NET"], pages=3))
    # two columns: contact on the left, skills on the right
    left = ["Riley Kim", "riley.kim@example.com", "+44 20 7946 0958"]
    right = ["Skills", "Node.js, C#", "Excel"]
    pdfgen.write(folder / "three.pdf", pdfgen.build([[left, right]]))

    result = _import(store, account, tmp_path, folder)

    assert (result.created, result.updated, result.errors) == (3, 0, 0)
    users = {u.email: u for u in _users(store, account)}
    first, last, email = pdfgen.person(1)
    one = users[email]
    assert (one.first_name, one.last_name, one.phone) == (first, last, "+1 415 555 0001")
    assert one.data["links"] == "https://linkedin.com/in/alexmorgan"
    assert _skills(store, one.id) == ["Python", "Go", "SQL", "PostgreSQL"]
    two = users[pdfgen.person(2)[2]]
    # JavaScript is not also Java; C++ is not C
    assert _skills(store, two.id) == ["JavaScript", "C++", ".NET", "PostgreSQL"]
    three = users["riley.kim@example.com"]
    assert (three.first_name, three.last_name) == ("Riley", "Kim")
    assert set(_skills(store, three.id)) == {"Node.js", "C#", "Excel"}
    with store.engine.connect() as c:
        evidence = store_docs.skills_of(c, "resume", one.id)[0]
        doc = c.execute(sa.select(schema.documents).where(schema.documents.c.candidate_id == one.id)).one()
    page = doc.text.split("\n\f")[evidence["page"] - 1]
    assert page[evidence["span_start"] : evidence["span_end"]] == "Python"
    assert (doc.status, doc.version, doc.pages, doc.filename) == ("completed", 1, 1, "one.pdf")
    assert Path(doc.storage_path) == tmp_path / "stored" / doc.content_sha256
    assert Path(doc.storage_path).read_bytes() == (folder / "one.pdf").read_bytes()
    row = list_imports(store, account, limit=1)[0]
    assert (row["type"], row["file"], row["created"], row["status"]) == (
        "candidates",
        "resumes/ (3 files)",
        3,
        "completed",
    )


def test_newer_resume_updates_the_applicant_as_a_new_version(
    store: RecordStore, account: uuid.UUID, tmp_path: Path
) -> None:
    first = pdfgen.write(tmp_path / "a" / "cv.pdf", pdfgen.resume_pdf(7, ["Python"]))
    _import(store, account, tmp_path, first)
    newer = pdfgen.write(tmp_path / "b" / "cv-2026.pdf", pdfgen.resume_pdf(7, ["Rust", "Kubernetes"]))

    result = _import(store, account, tmp_path, newer)

    assert (result.created, result.updated) == (0, 1)
    (user,) = _users(store, account)
    # the skills of the newest version
    assert _skills(store, user.id) == ["Rust", "Kubernetes", "PostgreSQL"]
    with store.engine.connect() as c:
        versions = c.execute(
            sa.select(schema.documents.c.version, schema.documents.c.filename)
            .where(schema.documents.c.candidate_id == user.id)
            .order_by(schema.documents.c.version)
        ).all()
    assert [tuple(v) for v in versions] == [(1, "cv.pdf"), (2, "cv-2026.pdf")]


def test_the_same_pdf_dropped_twice_is_skipped(store: RecordStore, account: uuid.UUID, tmp_path: Path) -> None:
    pdf = pdfgen.write(tmp_path / "cv.pdf", pdfgen.resume_pdf(3))
    _import(store, account, tmp_path, pdf)
    again = pdfgen.write(tmp_path / "copy" / "cv (1).pdf", pdf.read_bytes())

    result = _import(store, account, tmp_path, again)

    assert (result.created, result.updated, result.skipped, result.errors) == (0, 0, 1, 0)
    assert [o.status for o in result.documents] == ["skipped"]
    assert len(_users(store, account)) == 1
    rows = list_imports(store, account, limit=2)
    assert (rows[0]["file"], rows[0]["skipped"]) == ("cv (1).pdf", 1)


def _bad_files(tmp_path: Path) -> dict[str, Path]:
    from pypdf import PdfReader, PdfWriter

    d = tmp_path / "bad"
    good = pdfgen.resume_pdf(11)
    files = {
        "empty": pdfgen.write(d / "empty.pdf", b""),
        "not_pdf": pdfgen.write(d / "page.pdf", b"<!DOCTYPE html><html><body>Sign in</body></html>"),
        "corrupt": pdfgen.write(d / "truncated.pdf", good[: len(good) // 2]),
    }
    for name, user, owner in (("locked", "secret", "owner"), ("locked-empty-user", "", "owner2")):
        w = PdfWriter(clone_from=PdfReader(pdfgen.write(d / f"{name}-src.pdf", pdfgen.resume_pdf(12 if user else 13))))
        w.encrypt(user_password=user, owner_password=owner)
        with open(d / f"{name}.pdf", "wb") as f:
            w.write(f)
        (d / f"{name}-src.pdf").unlink()
    files["encrypted"] = d / "locked.pdf"
    files["owner_only"] = d / "locked-empty-user.pdf"
    return files


def test_each_failure_is_named_and_never_stops_the_others(
    store: RecordStore, account: uuid.UUID, tmp_path: Path
) -> None:
    files = _bad_files(tmp_path)
    good = pdfgen.write(tmp_path / "bad" / "good.pdf", pdfgen.resume_pdf(10))

    result = _import(store, account, tmp_path, *files.values(), good)

    by_name = {o.name: o for o in result.documents}
    assert by_name["empty.pdf"].error_kind == "empty"
    assert by_name["page.pdf"].error_kind == "not_pdf"
    assert "HTML page" in by_name["page.pdf"].error
    assert by_name["truncated.pdf"].error_kind == "corrupt"
    assert by_name["locked.pdf"].error_kind == "encrypted"
    assert "password" in by_name["locked.pdf"].error
    # an owner password alone restricts editing, not reading
    assert by_name["locked-empty-user.pdf"].status == "created"
    assert by_name["good.pdf"].status == "created"
    assert (result.created, result.errors) == (2, 4)
    with store.engine.connect() as c:
        failed = c.execute(
            sa.select(schema.documents.c.filename, schema.documents.c.status, schema.documents.c.error_kind).where(
                schema.documents.c.account_id == account, schema.documents.c.status == "failed"
            )
        ).all()
    assert {(f.filename, f.error_kind) for f in failed} == {
        ("empty.pdf", "empty"),
        ("page.pdf", "not_pdf"),
        ("truncated.pdf", "corrupt"),
        ("locked.pdf", "encrypted"),
    }
    row = list_imports(store, account, limit=1)[0]
    assert (row["created"], row["errors"]) == (2, 4)
    assert "4 of 6 documents failed" in row["error_message"]


def test_a_file_that_changes_after_it_was_hashed_fails_and_the_others_are_imported(
    store: RecordStore, account: uuid.UUID, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "resumes"
    pdfgen.write(folder / "steady.pdf", pdfgen.resume_pdf(71, ["Python"]))
    moving = pdfgen.write(folder / "moving.pdf", pdfgen.resume_pdf(72, ["Java"]))
    hashed = engine.sha256_of

    def then_rewritten(path: Path) -> str:
        # the file is replaced between the hash and the copy made when its read comes back
        sha = hashed(path)
        if path.name == "moving.pdf":
            pdfgen.write(moving, pdfgen.resume_pdf(73, ["Rust"]))
        return sha

    monkeypatch.setattr(engine, "sha256_of", then_rewritten)

    result = _import(store, account, tmp_path, folder)

    assert (result.created, result.errors) == (1, 1)
    [failed] = [o for o in result.documents if o.status == "failed"]
    assert failed.name == "moving.pdf" and "changed while it was being imported" in failed.error
    assert [u.email for u in _users(store, account)] == [pdfgen.person(71)[2]]


def test_limits_are_named(store: RecordStore, account: uuid.UUID, tmp_path: Path) -> None:
    from connectors.documents.pdf import Limits

    many = pdfgen.write(tmp_path / "many.pdf", pdfgen.build([[["page"]] for _ in range(60)]))
    big = pdfgen.write(tmp_path / "big.pdf", pdfgen.build([pdfgen.scanned_page(["Wide scanned page " * 3] * 22)]))
    small, large = many.stat().st_size, big.stat().st_size
    assert small < large

    result = _import(store, account, tmp_path, many, big, limits=Limits(max_pages=50, max_bytes=(small + large) // 2))

    kinds = {o.name: o.error_kind for o in result.documents}
    assert kinds == {"many.pdf": "too_many_pages", "big.pdf": "too_large"}


def test_rollback_removes_applicants_documents_and_skills(
    store: RecordStore, account: uuid.UUID, tmp_path: Path
) -> None:
    existing = pdfgen.write(tmp_path / "old" / "cv.pdf", pdfgen.resume_pdf(30, ["Python"]))
    _import(store, account, tmp_path, existing)
    before = _users(store, account)[0]
    folder = tmp_path / "new"
    pdfgen.write(folder / "cv.pdf", pdfgen.resume_pdf(30, ["Scala"]))
    pdfgen.write(folder / "other.pdf", pdfgen.resume_pdf(31, ["Java"]))
    result = _import(store, account, tmp_path, folder)
    assert (result.created, result.updated) == (1, 1)

    rollback_import(store, account, result.import_id, actor="test")

    users = _users(store, account)
    assert [u.email for u in users] == [before.email]
    assert users[0].first_name == before.first_name
    assert _skills(store, before.id) == ["Python", "PostgreSQL"]
    with store.engine.connect() as c:
        left = c.execute(
            sa.select(sa.func.count())
            .select_from(schema.documents)
            .where(schema.documents.c.import_id == result.import_id)
        ).scalar()
        skills_left = c.execute(
            sa.select(sa.func.count())
            .select_from(schema.candidate_skills)
            .where(schema.candidate_skills.c.import_id == result.import_id)
        ).scalar()
        audit = c.execute(
            sa.select(schema.audit_log.c.operation, sa.func.count())
            .where(schema.audit_log.c.change_set_id == result.import_id)
            .group_by(schema.audit_log.c.operation)
        ).all()
    assert (left, skills_left) == (0, 0)
    assert {op for op, _ in audit} >= {"document.create", "candidate_skills.create"}


def test_an_import_larger_than_a_chunk_stores_every_document_its_text_skills_and_audit(
    store: RecordStore, account: uuid.UUID, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # chunks of 2 documents (100 in use): 7 files are 4 chunks of records, documents and skills
    monkeypatch.setattr(engine, "CHUNK", 2)
    folder = tmp_path / "many"
    given = {i: ["Python", "Go"] if i % 2 else ["Rust", "Kubernetes", "Excel"] for i in range(40, 46)}
    for i, skills in given.items():
        pdfgen.write(folder / f"cv-{i}.pdf", pdfgen.resume_pdf(i, skills, pages=1 + i % 2))
    # a failed document between the others
    pdfgen.write(folder / "cv-42b.pdf", b"")

    result = _import(store, account, tmp_path, folder)

    assert (result.created, result.errors) == (6, 1)
    users = {u.email: u for u in _users(store, account)}
    d, cs = schema.documents, schema.candidate_skills
    with store.engine.connect() as c:
        for i, skills in given.items():
            user = users[pdfgen.person(i)[2]]
            assert set(skills) <= set(_skills(store, user.id))
            doc = c.execute(sa.select(d).where(d.c.candidate_id == user.id)).one()
            assert (doc.status, doc.pages, doc.filename) == ("completed", 1 + i % 2, f"cv-{i}.pdf")
            # every skill's evidence is where it says, in the document's stored text
            for found in store_docs.skills_of(c, "resume", user.id):
                page = doc.text.split("\n\f")[found["page"] - 1]
                assert page[found["span_start"] : found["span_end"]] == found["evidence"]
        failed = c.execute(sa.select(d.c.status, d.c.error_kind).where(d.c.filename == "cv-42b.pdf")).one()
        stored_skills = c.execute(
            sa.select(sa.func.count()).select_from(cs).where(cs.c.import_id == result.import_id)
        ).scalar()
        audit = dict(
            c.execute(
                sa.select(schema.audit_log.c.operation, sa.func.count())
                .where(schema.audit_log.c.change_set_id == result.import_id)
                .group_by(schema.audit_log.c.operation)
            ).all()
        )
    assert tuple(failed) == ("failed", "empty")
    assert audit["document.create"] == 7
    assert audit["candidate_skills.create"] == stored_skills == sum(o.skills for o in result.documents)
    assert [o.pages for o in sorted(result.documents, key=lambda o: o.name) if o.status == "created"] == [
        1 + i % 2 for i in given
    ]
