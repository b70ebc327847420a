"""Document imports in Dagster: one run imports many documents; each document is a partition.

- `document_import_job` (op `import_documents`): the launch. Its config (the Launchpad form) names
  the files or folders, the posting URLs and the kind; the drop-folder sensors and
  `bulkops documents import` launch it too. One run reads all its documents in worker processes
  (Dagster's start-up cost is paid once, not per document), writes the records and skills as one
  import, adds one `documents` partition per document and reports each document's outcome on the
  partitioned asset `documents/document_skills`: a materialization with its counts when its
  skills are stored, an observation with the reason when it failed.
- `document_skills` (partitioned by document): the background task of one document. Its
  partitions view is the Background Tasks page (status, counts, reason per document). Materializing
  a partition (a re-run, from the UI or a backfill) reads the stored original again, stores the
  skills found (replacing the document's earlier ones) and fails with the reason, terminally, when
  the document cannot be read.
"""

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dagster as dg
from pydantic import Field

from connectors import settings
from connectors.documents import pool, skills
from connectors.documents.errors import DocumentError
from connectors.documents.pdf import Limits
from connectors.store import changes
from connectors.store import documents as store_docs
from pipelines.imports import dropzone
from pipelines.instance import record_process
from pipelines.partition_checks import partition_check
from resources import RecordStoreResource

if TYPE_CHECKING:
    # the import engine (Arrow, httpx) loads when a document import runs, not with the code location
    from pipelines.documents import engine

document_partitions = dg.DynamicPartitionsDefinition(name="documents")
SKILLS_KEY = dg.AssetKey(["documents", "document_skills"])
# the check that fails, per document partition, when the document cannot be read
READABLE_CHECK = "readable"
# drop folders of documents, under the drop-zone root
FOLDERS = {"resume": "resumes", "job_description": "job_descriptions"}


class DocumentImportConfig(dg.Config):
    """The launch config of a document import (the Launchpad form of `document_import_job`)."""

    kind: str = Field(default="resume", description="resume (applicants) or job (jobs from PDFs and posting URLs).")
    paths: list[str] = Field(default_factory=list, description="PDF files and folders of PDFs to import.")
    urls: list[str] = Field(default_factory=list, description="Public job posting URLs (kind job only).")
    account: str = Field(default_factory=settings.default_account, description="Slug of the account to import into.")
    actor: str = Field(default="bulkops", description="Who the audit log names for this import.")
    max_pages: int = Field(default=200, description="Documents with more pages fail with a page-count limit.")
    max_megabytes: int = Field(default=50, description="Files larger than this fail with a size limit.")
    seconds_per_document: float = Field(
        default=60.0, description="Time one document may take (its worker is stopped after)."
    )
    memory_megabytes: int = Field(default=1536, description="Address space of a document worker process.")
    workers: int = Field(default=0, description="Worker processes reading documents; 0: one per core.")
    dropzone: str = Field(
        default="",
        description="Drop-zone root the files were dropped into (set by the sensors): they move to processed/ "
        "or failed/ after the import. Empty: the default drop zone; files elsewhere stay where they are.",
    )

    def limits(self) -> Limits:
        return Limits(
            max_bytes=self.max_megabytes * 1024 * 1024,
            max_pages=self.max_pages,
            seconds=self.seconds_per_document,
            memory_bytes=self.memory_megabytes * 1024 * 1024,
        )


def _metadata(o: "engine.DocumentOutcome") -> dict[str, Any]:
    meta: dict[str, Any] = {"status": o.status, "skills": o.skills, "pages": o.pages, "ocr_pages": o.ocr_pages}
    if o.document_id:
        meta["document_id"] = str(o.document_id)
    if o.record_id:
        meta["record_id"] = str(o.record_id)
    if o.error:
        meta["reason"] = dg.MetadataValue.text(o.error)
    return meta


def _move_dropped(paths: list[str], kind: str, outcomes: "list[engine.DocumentOutcome]", root: Path | None) -> None:
    """Files of the kind's drop folder move to processed/ or failed/ (a given path outside it stays)."""
    from pipelines.documents import engine

    folder = FOLDERS[kind]
    by_name = {o.name: o for o in outcomes}
    for given in paths:
        for f in engine.expand([given]):
            o = by_name.get(f.name)
            if o is None or not o.sha256:
                continue
            outcome = dropzone.FAILED if o.status == "failed" else dropzone.PROCESSED
            dropzone.move_claimed(f, folder, o.sha256, outcome, root)


@dg.op(
    description="Import resume or job-description documents (files, folders, posting URLs) as one import: "
    "records through the import writer, documents and skills with evidence, one `documents` partition per document.",
    tags={"bulkops/group": "documents"},
    out=dg.Out(dg.Nothing),
)
def import_documents(
    context: dg.OpExecutionContext, config: DocumentImportConfig, record_store: RecordStoreResource
) -> Iterator[dg.AssetMaterialization | dg.AssetCheckEvaluation | dg.AssetObservation | dg.Output]:
    from pipelines.documents import engine

    # the run's processes, so a killed run is found dead (dead_run_sensor) and its import row ended
    record_process(context)
    store = record_store.store
    account_id = store.account_id(config.account)
    try:
        kind = engine.kind_of(config.kind)
        files = engine.expand(config.paths)
    except (ValueError, FileNotFoundError) as exc:
        raise dg.Failure(description=str(exc), allow_retries=False) from exc
    if not files and not config.urls:
        raise dg.Failure(
            description=f"nothing to import: no PDF in {', '.join(config.paths) or 'the paths given'}",
            allow_retries=False,
        )
    result = engine.import_documents(
        store,
        account_id,
        kind=kind,
        paths=config.paths,
        urls_=config.urls,
        actor=config.actor,
        dagster_run_id=context.run.run_id,
        limits=config.limits(),
        workers=config.workers or None,
        failed_rows_dir=settings.var_dir() / "imports" / "failed-rows",
    )
    keys = list(dict.fromkeys(o.partition_key for o in result.documents if o.partition_key))
    if keys:
        # one call: it adds only the keys that are new
        context.instance.add_dynamic_partitions(document_partitions.name, keys)
    _move_dropped(config.paths, kind, result.documents, Path(config.dropzone) if config.dropzone else None)
    # one event per document: its status in the partitions view (the event store's write is the cost).
    # Yielded, not `context.log_event`-ed: Dagster keeps logged events in a list until the op returns,
    # a yielded one is stored and let go at once, so the run holds no event per document
    for o in result.documents:
        if not o.partition_key:
            continue
        if o.status in ("created", "updated"):
            yield dg.AssetMaterialization(SKILLS_KEY, partition=o.partition_key, metadata=_metadata(o))
        else:
            # a failed document: its `readable` check fails for its partition (the partitions view shows
            # no failure for a partition of a run that succeeded), and an observation keeps its counts
            yield dg.AssetCheckEvaluation(
                SKILLS_KEY,
                READABLE_CHECK,
                passed=False,
                partition=o.partition_key,
                metadata={"reason": dg.MetadataValue.text(o.error or o.status), "kind": o.error_kind or ""},
                description=o.error,
            )
            yield dg.AssetObservation(SKILLS_KEY, partition=o.partition_key, metadata=_metadata(o))
    failed = [o for o in result.documents if o.status == "failed"]
    context.log.info(
        f"import {result.import_id} {result.status}: {result.created} created, {result.updated} updated, "
        f"{result.skipped} skipped, {result.errors} errors in {result.elapsed_s:.1f} s"
    )
    yield dg.Output(
        None,
        metadata={
            "import_id": str(result.import_id),
            "type": "applicants" if result.kind == "resume" else "jobs",
            "status": result.status,
            "created": result.created,
            "updated": result.updated,
            "skipped": result.skipped,
            "errors": result.errors,
            "failed": dg.MetadataValue.md("\n".join(f"- {o.name}: {o.error}" for o in failed[:50]) or "none"),
        },
    )


@dg.job(
    description="Import resumes (applicants) or job descriptions and posting URLs (jobs) as one import; "
    "each document becomes a `documents` partition of documents/document_skills. Launched by the document "
    "drop-folder sensors, by `bulkops documents import` and from the Launchpad.",
    tags={"bulkops/kind": "document_import", "bulkops/group": "documents"},
    executor_def=dg.in_process_executor,
)
def document_import_job() -> None:
    import_documents()


@dg.asset(
    key=SKILLS_KEY,
    group_name="documents",
    partitions_def=document_partitions,
    description="Skills found in one document (one partition per imported resume or job description), stored "
    "in candidate_skills / job_skills with their evidence. Imports report each document here; materializing a "
    "partition re-runs that document's extraction from its stored original.",
    retry_policy=dg.RetryPolicy(max_retries=2, delay=2, backoff=dg.Backoff.EXPONENTIAL),
    kinds={"pdf"},
    check_specs=[
        partition_check(
            READABLE_CHECK,
            asset=SKILLS_KEY,
            partitions_def=document_partitions,
            description="The document could be read and its skills stored; fails with the reason (encrypted, "
            "corrupt, not a PDF, a limit...) in the import that read it, passes when a re-run succeeds.",
        )
    ],
)
def document_skills(context: dg.AssetExecutionContext, record_store: RecordStoreResource) -> dg.MaterializeResult:
    key = context.partition_key
    store = record_store.store
    with store.begin() as conn:
        doc = store_docs.by_partition(conn, key)
        if doc is None:
            raise dg.Failure(description=f"no document has partition {key}", allow_retries=False)
        store_docs.set_status(conn, doc.id, status="processing", attempts=doc.attempts + 1)
    owner = doc.candidate_id or doc.job_id
    try:
        if owner is None:
            raise DocumentError("unreadable", f"{doc.filename}: no applicant or job was made from it; import it again")
        if not doc.storage_path or not Path(doc.storage_path).is_file():
            raise DocumentError("unreadable", f"{doc.filename}: its stored original is missing ({doc.storage_path})")
        if doc.media_type == "text/html":
            from connectors.documents import urls

            html = Path(doc.storage_path).read_bytes().decode("utf-8", "replace")
            pages = [urls.parse_posting(html, doc.source_url or "").description]
            found = skills.matcher().find(pages)
            ocr = 0
        else:
            (read,) = list(pool.read_all([doc.storage_path], "resume" if doc.kind == "resume" else "job", workers=1))
            if read.error is not None:
                raise DocumentError(
                    read.error.kind, read.error.message.replace(Path(doc.storage_path).name, doc.filename)
                )
            pages, found, ocr = read.pages, read.skills, len(read.ocr_pages)
    except DocumentError as exc:
        with store.begin() as conn:
            store_docs.set_status(conn, doc.id, status="failed", error_kind=exc.kind, error_message=str(exc))
        raise dg.Failure(description=str(exc), metadata={"reason": exc.kind}, allow_retries=False) from exc
    with store.begin() as conn:
        cs = changes.load_change_set(conn, doc.import_id) if doc.import_id else None
        if cs is None:
            raise dg.Failure(description=f"{doc.filename}: its import is gone", allow_retries=False)
        n = store_docs.replace_skills(conn, cs, doc.kind, owner, doc.id, found, skills.matcher().skills)
        store_docs.set_status(
            conn, doc.id, status="completed", error_kind=None, error_message=None, pages=len(pages), ocr_pages=ocr
        )
    return dg.MaterializeResult(
        metadata={
            "status": "completed",
            "skills": n,
            "pages": len(pages),
            "ocr_pages": ocr,
            "document_id": str(doc.id),
        },
        check_results=[dg.AssetCheckResult(check_name=READABLE_CHECK, passed=True)],
    )


document_skills_job = dg.define_asset_job(
    "document_skills_job",
    selection=dg.AssetSelection.assets(document_skills),
    description="Re-run the skills extraction of one document (one `documents` partition) from its stored original.",
    tags={"bulkops/kind": "document_skills", "bulkops/group": "documents"},
)
