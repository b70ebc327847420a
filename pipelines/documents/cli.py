"""`bulkops documents`: import resumes and job descriptions, and see each document's task."""

from __future__ import annotations

from pathlib import Path

import click

from connectors import settings
from resources import store_run_config


@click.group("documents")
def documents() -> None:
    """Import resume and job-description PDFs (and job posting URLs); each document's task."""


@documents.command("import")
@click.argument("paths", nargs=-1, type=click.Path(exists=True, path_type=Path))
@click.option(
    "--type",
    "kind",
    type=click.Choice(["resume", "job"]),
    required=True,
    help="resume: one applicant per PDF; job: one job per PDF or URL.",
)
@click.option("--url", "urls", multiple=True, help="A public job posting URL (with --type job); repeat for more.")
@click.option("--account", default=None, help="Account slug (default $BULKOPS_ACCOUNT or demo).")
@click.option("--workers", type=int, default=0, help="Worker processes reading PDFs (default: one per core).")
def documents_import(
    paths: tuple[Path, ...], kind: str, urls: tuple[str, ...], account: str | None, workers: int
) -> None:
    """Import PATHS (PDF files or folders of PDFs) and URLs as one import, in a document_import_job run.

    Prints the import's history row, then each document that failed and why.
    """
    import dagster as dg

    from pipelines import runs
    from pipelines.cli import CommandFailed, _print_history, _store_and_account
    from pipelines.imports.engine import list_imports
    from pipelines.imports.launch import failure_message
    from pipelines.instance import use_local_dagster_home

    if not paths and not urls:
        raise CommandFailed("nothing to import: give PDF files or folders, or --url")
    if urls and kind != "job":
        raise CommandFailed("--url imports job postings: use --type job")
    slug = account or settings.default_account()
    store, account_id = _store_and_account(slug)
    config = {
        "kind": kind,
        "paths": [str(p.resolve()) for p in paths],
        "urls": list(urls),
        "account": slug,
        "actor": "cli",
        "workers": workers,
    }
    run_config = {
        "ops": {"import_documents": {"config": config}},
        "resources": store_run_config(settings.database_url()),
    }
    use_local_dagster_home()
    with dg.DagsterInstance.get() as instance:
        try:
            run_id = runs.launch_run(
                "document_import_job",
                run_config=run_config,
                tags={"bulkops/document_kind": kind, "bulkops/launched_by": "cli"},
                instance=instance,
            )
        except RuntimeError as exc:
            raise CommandFailed(f"cannot launch the document import: {exc}") from exc
        try:
            status = runs.wait_for_run(run_id, instance=instance)
        except KeyboardInterrupt:
            runs.terminate_run(run_id, instance=instance)
            raise
        if status != dg.DagsterRunStatus.SUCCESS:
            raise CommandFailed(f"{failure_message(instance, run_id)} (dagster run {run_id})")
    rows = list_imports(store, account_id, dagster_run_id=run_id)
    _print_history(rows)
    if rows:
        from pipelines.imports.engine import get_import

        details = (get_import(store, account_id, rows[0]["id"]) or {}).get("details") or {}
        for f in (details.get("documents") or {}).get("failed", []):
            click.echo(f"  failed: {f['reason']}")
    click.echo(f"dagster run: {run_id}")


@documents.command("tasks")
@click.option("--type", "kind", type=click.Choice(["resume", "job"]), default=None, help="Only resumes or jobs.")
@click.option("--account", default=None, help="Account slug (default $BULKOPS_ACCOUNT or demo).")
@click.option("--limit", type=int, default=50, show_default=True)
def documents_tasks(kind: str | None, account: str | None, limit: int) -> None:
    """Skills-extraction tasks, newest first: document, status, attempts, and why a failed one failed."""
    from connectors.store import documents as store_docs
    from pipelines.cli import _store_and_account

    store, account_id = _store_and_account(account)
    with store.engine.connect() as conn:
        rows = store_docs.tasks(
            conn, account_id, {"resume": "resume", "job": "job_description"}.get(kind or ""), limit=limit
        )
    for r in rows:
        name = r["filename"] or r["source_url"] or ""
        click.echo(f"{r['created_at']:%Y-%m-%d %H:%M:%S}  {r['kind']:<15}  {r['status']:<10}  {r['attempts']}  {name}")
        if r["error_message"]:
            click.echo(f"    {r['error_kind']}: {r['error_message']}")
