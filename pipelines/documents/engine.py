"""Document imports: resume PDFs become applicants, job-description PDFs and posting URLs jobs.

One launch (many files and URLs) is one import: one `import_history` row of type candidates
(shown as Applicants) or jobs, backed by its change set. Its steps:

1. every file is hashed (the worker processes start meanwhile); a file this account already
   imported (same kind, same bytes) is a skipped document;
2. the rest are read in worker processes (`connectors.documents.pool`: text, OCR for scans,
   fields, skills) and, as each comes back, stored by content hash
   (`settings.documents_dir()/<sha256>`); URLs are fetched and parsed (`connectors.documents.urls`);
3. the records go through the import writer as one batch of parsed rows (Parquet), so matching
   (email for applicants, code for jobs), updates, audit rows and the history counters are the
   import's own: a newer resume of the same person updates them, never a second applicant;
4. in one transaction of the same change set: a document row per file (linked to its record,
   versioned, with its task status and partition key) and the skills found, with evidence;
   documents that could not be read are stored with their reason and counted as errors.

Memory does not grow with the number of documents: each document's text and skills go to a
temporary file (`_Spool`) as it is read, the records' rows go to the Parquet batch in chunks, and
step 4 writes `CHUNK` documents per statement, loading only their text and skills. What stays in
memory for the whole import is a few small fields per document (name, hash, counts, outcome).

`changes.rollback` (`bulkops imports rollback`) undoes all of it: records, documents, skills.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import io
import json
import os
import pickle
import re
import shutil
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

import pyarrow as pa
import pyarrow.json as pj
import pyarrow.parquet as pq

from connectors import settings
from connectors.documents import pool, skills, urls
from connectors.documents.errors import DocumentError
from connectors.documents.pdf import Limits
from connectors.store import changes, history
from connectors.store import documents as store_docs
from pipelines.imports import dropzone
from pipelines.imports.engine import ImportOptions, end_if_all_failed, run_import

KINDS = {"resume": "candidates", "job_description": "jobs"}
# the words users pick a kind by
KIND_ALIASES = {"resume": "resume", "resumes": "resume", "job": "job_description", "jobs": "job_description",
                "job_description": "job_description", "job_descriptions": "job_description"}  # fmt: skip
IGNORED = re.compile(r"^(\.|~\$)|\.(part|partial|crdownload|tmp)$", re.I)
# documents written per statement (and record rows per Parquet row group): the import holds one
# chunk's text, skills and audit images at a time, whatever the number of documents
CHUNK = 100


def kind_of(word: str) -> str:
    try:
        return KIND_ALIASES[word.strip().lower()]
    except KeyError:
        raise ValueError(f"unknown document type {word!r}: resume or job") from None


@dataclass
class DocumentOutcome:
    """What became of one file or URL."""

    name: str
    sha256: str
    status: str  # created | updated | skipped | failed
    document_id: uuid.UUID | None = None
    record_id: uuid.UUID | None = None
    partition_key: str | None = None
    skills: int = 0
    pages: int = 0
    ocr_pages: int = 0
    error_kind: str | None = None
    error: str | None = None
    source_url: str | None = None


@dataclass
class DocumentImportResult:
    import_id: uuid.UUID
    kind: str
    status: str
    created: int = 0
    updated: int = 0
    skipped: int = 0
    errors: int = 0
    documents: list[DocumentOutcome] = field(default_factory=list)
    elapsed_s: float = 0.0


class _Spool:
    """Each read document's text and skills in a temporary file, from its read until its rows are
    written: what the import keeps in memory per document is its page count, not its text."""

    def __init__(self, file: IO[bytes]) -> None:
        self.file = file
        self.at: dict[str, int] = {}
        self.pages: dict[str, int] = {}

    def put(self, sha: str, read: pool.Read) -> None:
        """Move READ's pages and skills to the file (READ keeps its fields, OCR pages and error)."""
        self.file.seek(0, os.SEEK_END)
        self.at[sha] = self.file.tell()
        self.pages[sha] = len(read.pages)
        pickle.dump((read.pages, read.skills), self.file, pickle.HIGHEST_PROTOCOL)
        read.pages, read.skills = [], []

    def take(self, sha: str) -> tuple[list[str], list[Any]]:
        """The document's pages and skills (none for a document that was not read)."""
        if sha not in self.at:
            return [], []
        self.file.seek(self.at[sha])
        return pickle.load(self.file)


def sha256_of(path: Path) -> str:
    return dropzone.file_sha256(path)


def expand(paths: Iterable[str | Path]) -> list[Path]:
    """Files to import: each file given, and the PDFs of each folder given (not its subfolders)."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out.extend(
                sorted(
                    f for f in p.iterdir() if f.is_file() and f.suffix.lower() == ".pdf" and not IGNORED.search(f.name)
                )
            )
        elif p.is_file():
            out.append(p)
        else:
            raise FileNotFoundError(f"{p}: no such file or folder")
    return list(dict.fromkeys(out))


def partition_key(kind: str, name: str, sha: str) -> str:
    """The document's Dagster partition: `<kind>/<name>@<sha12>` (names cleaned of separators)."""
    clean = re.sub(r"[^\w.@+-]+", "_", name)[:120]
    return f"{kind}/{clean}@{sha[:12]}"


def store_file(path: Path, directory: Path) -> tuple[str, Path, int]:
    """The file stored under DIRECTORY/<sha256>, hashed while it is copied (one read): (sha256, path, size)."""
    directory.mkdir(parents=True, exist_ok=True)
    h = hashlib.sha256()
    size = 0
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".import.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, open(path, "rb") as src:
            while chunk := src.read(1 << 20):
                h.update(chunk)
                out.write(chunk)
                size += len(chunk)
        sha = h.hexdigest()
        target = directory / sha
        if not target.exists():
            os.replace(tmp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    return sha, target, size


def store_original(data_or_path: bytes | Path, sha: str, directory: Path) -> Path:
    """The file stored under DIRECTORY/<sha256> (written to a temporary name, then renamed)."""
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / sha
    if target.exists():
        return target
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{sha[:12]}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out:
            if isinstance(data_or_path, bytes):
                out.write(data_or_path)
            else:
                with open(data_or_path, "rb") as src:
                    shutil.copyfileobj(src, out, 1 << 20)
        os.replace(tmp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    return target


def _code_for(name: str, url: str | None) -> str:
    if url:
        return f"url-{hashlib.sha256(url.encode()).hexdigest()[:12]}"
    stem = re.sub(r"[^a-z0-9]+", "-", Path(name).stem.lower()).strip("-")
    return f"jd-{stem[:80] or 'document'}"


def _clean(s: str | None) -> str | None:
    return s.replace("\x00", "") if s else s


def source_label(paths: list[Path], given: list[str], url_count: int) -> str:
    """The history row's file: the file's name, the folder's, `N files`, or -- for URLs only."""
    if not paths:
        return "--"
    if len(given) == 1 and Path(given[0]).is_dir():
        label = f"{Path(given[0]).name}/ ({len(paths)} files)"
    elif len(paths) == 1:
        label = paths[0].name
    else:
        label = f"{len(paths)} files"
    return f"{label} + {url_count} URLs" if url_count else label


def import_documents(
    store: Any,
    account_id: uuid.UUID,
    *,
    kind: str,
    paths: Iterable[str | Path] = (),
    urls_: Iterable[str] = (),
    actor: str = "bulkops",
    dagster_run_id: str | None = None,
    limits: Limits | None = None,
    workers: int | None = None,
    documents_dir: Path | None = None,
    failed_rows_dir: Path | None = None,
    source_name: str | None = None,
    fetch: Callable[[str], urls.Page] | None = None,
) -> DocumentImportResult:
    """Import resume or job-description documents (files, folders of PDFs, posting URLs) as one import."""
    t0 = time.monotonic()
    kind = kind_of(kind)
    entity = KINDS[kind]
    given = [str(p) for p in paths]
    files = expand(given)
    url_list = list(dict.fromkeys(u.strip() for u in urls_ if u.strip()))
    if not files and not url_list:
        raise ValueError(
            f"nothing to import: no PDF in {', '.join(given)}" if given else "nothing to import: no paths or URLs"
        )
    if url_list and kind != "job_description":
        raise ValueError("URLs are imported as jobs: use --type job")
    docs_dir = documents_dir or settings.documents_dir()
    limits = limits or Limits()
    # the workers start now: their start-up overlaps hashing the files
    readers = pool.Pool(limits, workers=min(workers or pool.default_workers(), len(files))) if files else None
    with tempfile.TemporaryFile(prefix="bulkops-documents-") as spooled:
        return _import(
            store, account_id, kind, entity, given, files, url_list, actor, dagster_run_id, docs_dir,
            failed_rows_dir, source_name, fetch, readers, _Spool(spooled), t0,
        )  # fmt: skip


def _import(
    store: Any,
    account_id: uuid.UUID,
    kind: str,
    entity: str,
    given: list[str],
    files: list[Path],
    url_list: list[str],
    actor: str,
    dagster_run_id: str | None,
    docs_dir: Path,
    failed_rows_dir: Path | None,
    source_name: str | None,
    fetch: Callable[[str], urls.Page] | None,
    readers: pool.Pool | None,
    spool: _Spool,
    t0: float,
) -> DocumentImportResult:
    with readers or contextlib.nullcontext():
        if readers is not None and "pandas" not in sys.modules:
            # pyarrow imports pandas on the import writer's first `pa.array` (up to a second of CPU under
            # load): a thread loads it while the workers read, rather than after them
            threading.Thread(target=importlib.import_module, args=("pandas",), daemon=True).start()
        outcomes: list[DocumentOutcome] = []
        # name, sha, stored path, media type, url, size
        stored: list[tuple[str, str, Path, str, str | None, int]] = []
        # hashed now; stored (copied by content hash) as the workers read them
        for f in files:
            stored.append((f.name, sha256_of(f), f, "application/pdf", None, f.stat().st_size))
        fetched: dict[str, urls.Posting | DocumentError] = {}
        for u in url_list:
            try:
                page = (fetch or urls.fetch)(u)
                sha = hashlib.sha256(page.body).hexdigest()
                stored.append((u, sha, store_original(page.body, sha, docs_dir), "text/html", u, len(page.body)))
                fetched[u] = urls.parse_posting(page.body.decode("utf-8", "replace"), page.final_url)
            except DocumentError as exc:
                fetched[u] = exc
                outcomes.append(DocumentOutcome(u, "", "failed", error_kind=exc.kind, error=str(exc), source_url=u))

        with store.begin() as conn:
            known = store_docs.by_sha(conn, account_id, kind, [s for _, s, *_ in stored])
        todo, seen = [], set()
        for name, sha, path, media, url, size in stored:
            prior = known.get(sha)
            if sha in seen or (prior is not None and (prior.candidate_id or prior.job_id)):
                why = (
                    "the same content is in this import twice"
                    if sha in seen
                    else f"already imported ({prior.filename})"
                )
                outcomes.append(
                    DocumentOutcome(name, sha, "skipped", prior.id if prior else None, error=why, source_url=url)
                )
                continue
            seen.add(sha)
            todo.append((name, sha, path, media, url, size))

        timings = {"stored_s": round(time.monotonic() - t0, 3)}
        # read the PDFs in worker processes; parse the fetched pages here
        reads: dict[str, pool.Read] = {}
        pdfs = [(name, sha, path) for name, sha, path, _, url, _ in todo if url is None]
        by_path = {str(path): (name, sha) for name, sha, path in pdfs}
        worker_peak = 0
        stored_at: dict[str, Path] = {}
        for r in readers.read([p for _, _, p in pdfs], "resume" if kind == "resume" else "job") if readers else ():
            worker_peak = max(worker_peak, r.worker_peak_kib)
            name, sha = by_path[str(r.path)]
            copied, stored_at[sha], _ = store_file(r.path, docs_dir)
            if copied != sha:
                r.error = DocumentError("unreadable", f"{name} changed while it was being imported: drop it again")
            elif r.error is not None:
                r.error = DocumentError(r.error.kind, r.error.message.replace(r.path.name, name))
            spool.put(sha, r)
            reads[sha] = r
        todo = [(name, sha, stored_at.get(sha, path), *rest) for name, sha, path, *rest in todo]
    for name, sha, _, _, url, _ in todo:
        if url is None:
            continue
        post = fetched[url]
        if isinstance(post, DocumentError):
            continue
        found = skills.matcher().find([post.description])
        reads[sha] = pool.Read(
            Path(name),
            pages=[post.description],
            fields={"title": post.title, "location": post.location, "description": post.description},
            skills=found,
        )
        spool.put(sha, reads[sha])

    timings["read_s"] = round(time.monotonic() - t0 - sum(timings.values()), 3)
    # the records, through the import writer: their rows go to the Parquet batch CHUNK at a time
    columns = (
        ["email", "first_name", "last_name", "phone", "links", "resume_file", "resume_sha256"]
        if kind == "resume"
        else ["code", "title", "location", "description", "source_url"]
    )
    work = docs_dir / "imports"
    work.mkdir(parents=True, exist_ok=True)
    batch = work / f"{uuid.uuid4().hex}.parquet"
    key_of: dict[str, str] = {}  # sha -> email (normalised) or job code
    label = source_name or source_label(files, given, len(url_list))
    options = ImportOptions(
        entity=entity,
        on_duplicate="update",
        duplicate_keys=("email",) if kind == "resume" else ("external_id",),
        actor=actor,
        force=True,  # duplicates are decided per document, above
    )
    try:
        with pq.ParquetWriter(batch, pa.schema([(c, pa.string()) for c in columns])) as writer:
            rows: list[dict[str, Any]] = []
            for row in _record_rows(kind, todo, reads, key_of):
                rows.append(row)
                if len(rows) >= CHUNK:
                    writer.write_table(_string_table(rows, columns))
                    rows.clear()
            writer.write_table(_string_table(rows, columns))
        result = run_import(
            store,
            account_id,
            batch,
            options,
            source_name=label,
            failed_rows_dir=failed_rows_dir or (settings.var_dir() / "failed"),
            dagster_run_id=dagster_run_id,
        )
    finally:
        batch.unlink(missing_ok=True)
    import_id = result.import_id
    timings["records_s"] = round(time.monotonic() - t0 - sum(timings.values()), 3)

    # documents and skills, in the import's change set
    meta = skills.taxonomy()
    with store.begin() as conn:
        cs = changes.load_change_set(conn, import_id, actor=actor)
        assert cs is not None
        owners = (
            store_docs.candidates_by_email(conn, account_id, key_of.values())
            if kind == "resume"
            else store_docs.jobs_by_code(conn, account_id, key_of.values())
        )
        owner_col = "candidate_id" if kind == "resume" else "job_id"
        versions = store_docs.next_versions(conn, kind, list(owners.values()))
        known = store_docs.by_sha(conn, account_id, kind, [s for _, s, *_ in todo])
        new_docs: list[dict[str, Any]] = []
        new_skills: list[tuple[uuid.UUID, uuid.UUID, list]] = []

        def flush() -> None:
            # CHUNK documents, their skills and audit rows: a few statements, and only their text in memory
            store_docs.insert_documents(conn, cs, new_docs)
            store_docs.insert_skills(conn, cs, kind, new_skills, meta)
            new_docs.clear()
            new_skills.clear()

        for name, sha, path, media, url, size in todo:
            if len(new_docs) >= CHUNK:
                flush()
            r = reads.get(sha)
            err = r.error if r is not None else (fetched.get(url) if url else None)
            owner = owners.get(key_of.get(sha, ""))
            if err is None and owner is None:
                err = DocumentError("unreadable", f"{name}: its record was not written (see the failed rows file)")
            pk = partition_key(kind, name if url is None else (urlsplit_host(url) or "url"), sha)
            values: dict[str, Any] = {
                "content_sha256": sha,
                "filename": name[:500],
                "size_bytes": size,
                "media_type": media,
                "kind": kind,
                "source_url": url,
                "storage_path": str(path),
                "partition_key": pk,
                "attempts": 1,
                # every row has every column: the new ones are written by one executemany
                owner_col: None,
                "version": 1,
                "pages": None,
                "ocr_pages": 0,
                "text": None,
                "error_kind": None,
                "error_message": None,
            }
            if isinstance(err, DocumentError):
                values.update(status="failed", error_kind=err.kind, error_message=str(err)[:2000])
                status = "failed"
            else:
                pages, found = spool.take(sha)
                values.update(
                    {owner_col: owner},
                    version=versions.get(owner, 1),
                    pages=len(pages),
                    ocr_pages=len(r.ocr_pages),
                    text=_clean("\n\f".join(pages)),
                    status="completed",
                )
                del pages
                versions[owner] = versions.get(owner, 1) + 1
                status = "created" if values["version"] == 1 else "updated"
            prior = known.get(sha)
            n = 0
            if prior is not None:
                store_docs.reuse_document(conn, cs, prior.id, values)
                doc_id = prior.id
                if status != "failed":
                    n = store_docs.replace_skills(conn, cs, kind, owner, doc_id, found, meta)
            else:
                doc_id = uuid.uuid4()
                new_docs.append({"id": doc_id, **values})
                if status != "failed":
                    new_skills.append((owner, doc_id, found))
                    n = len(found)
            outcomes.append(
                DocumentOutcome(
                    name,
                    sha,
                    status,
                    doc_id,
                    owner if status != "failed" else None,
                    pk,
                    n,
                    spool.pages.get(sha, 0) if r and status != "failed" else 0,
                    len(r.ocr_pages) if r and status != "failed" else 0,
                    err.kind if isinstance(err, DocumentError) else None,
                    str(err) if isinstance(err, DocumentError) else None,
                    url,
                )
            )
        flush()
        failed = sum(1 for o in outcomes if o.status == "failed")
        skipped_docs = sum(1 for o in outcomes if o.status == "skipped")
        h = history.row(conn, import_id)
        details = dict(h.details or {})
        details["documents"] = {
            "kind": kind,
            "files": len(files),
            "urls": len(url_list),
            "failed": [
                {"file": o.name, "kind": o.error_kind, "reason": o.error} for o in outcomes if o.status == "failed"
            ][:200],
            "skipped": [{"file": o.name, "reason": o.error} for o in outcomes if o.status == "skipped"][:200],
            "ocr_pages": sum(o.ocr_pages for o in outcomes),
            "skills": sum(o.skills for o in outcomes),
            "worker_peak_mib": round(worker_peak / 1024, 1),
            "timings": {**timings, "documents_s": round(time.monotonic() - t0 - sum(timings.values()), 3)},
        }
        history.update(
            conn,
            import_id,
            errors=h.errors + failed,
            skipped=h.skipped + skipped_docs,
            rows_read=len(stored) + sum(1 for u in url_list if isinstance(fetched.get(u), DocumentError)),
            details=details,
            error_message=(
                f"{failed} of {len(outcomes)} documents failed; first: {next(o.error for o in outcomes if o.status == 'failed')}"[
                    :1900
                ]
                if failed
                else None
            ),
        )
        reasons = Counter(o.error_kind or "unreadable" for o in outcomes if o.status == "failed")
        end_if_all_failed(conn, import_id, reasons, what="documents")
        h = history.row(conn, import_id)
    return DocumentImportResult(
        import_id,
        kind,
        h.status,
        h.created,
        h.updated,
        h.skipped,
        h.errors,
        outcomes,
        round(time.monotonic() - t0, 3),
    )


def _record_rows(
    kind: str,
    todo: list[tuple[str, str, Path, str, str | None, int]],
    reads: dict[str, pool.Read],
    key_of: dict[str, str],
) -> Iterator[dict[str, Any]]:
    """The import writer's row of each document read (KEY_OF gets its match key); a resume with no
    email gets its error here. Each read's fields are dropped once in its row (a job's hold its text)."""
    for name, sha, _, _, url, _ in todo:
        r = reads.get(sha)
        if r is None or r.error is not None:
            continue
        fields, r.fields = r.fields, {}
        if kind == "resume":
            email = fields.get("email")
            if not email:
                r.error = DocumentError("no_text", f"{name}: no email address found: an applicant needs one")
                continue
            key_of[sha] = email.lower()
            yield {
                "email": email,
                "first_name": _clean(fields.get("first_name")),
                "last_name": _clean(fields.get("last_name")),
                "phone": _clean(fields.get("phone")),
                "links": " ".join(fields.get("links") or []) or None,
                "resume_file": name,
                # a newer resume is a change of the applicant even when its contact fields are the same
                "resume_sha256": sha,
            }
        else:
            code = _code_for(name, url)
            key_of[sha] = code.lower()
            yield {
                "code": code,
                "title": _clean(fields.get("title")) or Path(name).stem,
                "location": _clean(fields.get("location")),
                "description": _clean(fields.get("description")),
                "source_url": url,
            }


def _string_table(rows: list[dict[str, Any]], columns: list[str]) -> pa.Table:
    """ROWS as a table of string columns. Built through pyarrow's JSON reader, as `pa.array` of Python
    objects imports pandas (a second or more of a run's start) to check for pandas objects."""
    schema = pa.schema([(c, pa.string()) for c in columns])
    if not rows:
        return schema.empty_table()
    data = "".join(json.dumps({c: r[c] for c in columns}) + "\n" for r in rows).encode()
    return pj.read_json(io.BytesIO(data), parse_options=pj.ParseOptions(explicit_schema=schema))


def urlsplit_host(url: str) -> str:
    """'https://example.com/jobs/42' -> 'example.com/jobs/42' (a posting's partition name)."""
    parts = urlsplit(url)
    return f"{parts.hostname or ''}{parts.path}".strip("/")
