"""The `bulkops` command line: database, accounts, imports, the demo, the API server."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from connectors import settings
from pipelines.instance import use_local_dagster_home


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """bulkops: bulk operations on recruiting and HR records, run by Dagster."""


@main.group()
def db() -> None:
    """Record store schema (Alembic migrations)."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
def db_upgrade(revision: str) -> None:
    """Apply migrations up to REVISION."""
    from connectors.store import make_engine, migrate

    engine = make_engine()
    migrate.upgrade(engine, revision)
    click.echo(f"record store {engine.url.render_as_string(hide_password=True)} is at {migrate.current_revision(engine)}")


@db.command("downgrade")
@click.argument("revision")
def db_downgrade(revision: str) -> None:
    """Revert migrations down to REVISION (`base` drops everything)."""
    from connectors.store import make_engine, migrate

    engine = make_engine()
    migrate.downgrade(engine, revision)
    click.echo(f"record store is at {migrate.current_revision(engine) or 'base'}")


@db.command("current")
def db_current() -> None:
    """Show the schema revision of the record store and the one this code expects."""
    from connectors.store import make_engine, migrate

    engine = make_engine()
    click.echo(f"database: {migrate.current_revision(engine) or 'base'}  code: {migrate.head_revision()}")


@main.group()
def accounts() -> None:
    """Accounts (tenants)."""


@accounts.command("create")
@click.argument("slug")
@click.option("--name", default=None, help="Display name (defaults to the slug).")
def accounts_create(slug: str, name: str | None) -> None:
    """Create account SLUG (no-op when it exists) and print its id."""
    from connectors.store import RecordStore

    click.echo(RecordStore().ensure_account(slug, name))


@main.command("api")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--workers", default=1, show_default=True, type=int, help="uvicorn worker processes.")
@click.option("--max-body-mb", default=None, type=float, help="Largest request body in MiB (default 64).")
@click.option("--write-openapi", type=click.Path(dir_okay=False), default=None, help="Write the OpenAPI schema there and exit.")
def api_serve(host: str, port: int, workers: int, max_body_mb: float | None, write_openapi: str | None) -> None:
    """Serve the bulk-job HTTP API (seed 001) with uvicorn."""
    if write_openapi:
        from pipelines.api.openapi import write_openapi as write

        click.echo(f"wrote {write(write_openapi)}")
        return
    use_local_dagster_home()
    if max_body_mb is not None:
        os.environ["BULKOPS_API_MAX_BODY_BYTES"] = str(int(max_body_mb * 1024 * 1024))
    import uvicorn

    uvicorn.run("pipelines.api.app:create_app", factory=True, host=host, port=port, workers=workers)


@main.group()
def tokens() -> None:
    """API bearer tokens (stored as sha256 digests)."""


@tokens.command("create")
@click.argument("account_slug")
@click.option("--name", default="api", show_default=True, help="Label to tell tokens apart.")
@click.option("--user-id", default=None, help="User recorded as created_by on jobs made with the token.")
def tokens_create(account_slug: str, name: str, user_id: str | None) -> None:
    """Create a token for ACCOUNT_SLUG and print it once (only its digest is stored)."""
    import uuid

    from connectors.store import RecordStore
    from pipelines.api.tokens import create_token

    store = RecordStore()
    user = uuid.UUID(user_id) if user_id else None
    issued = create_token(store, store.account_id(account_slug), name=name, user_id=user)
    click.echo(f"token id {issued.id} ({name}); the token, shown once:", err=True)
    click.echo(issued.token)


@tokens.command("revoke")
@click.argument("token_or_id")
def tokens_revoke(token_or_id: str) -> None:
    """Revoke a token by its id or by the token itself."""
    from connectors.store import RecordStore
    from pipelines.api.tokens import revoke_token

    if not revoke_token(RecordStore(), token_or_id):
        raise click.ClickException("no active token matches")
    click.echo("revoked")


@tokens.command("list")
@click.argument("account_slug")
def tokens_list(account_slug: str) -> None:
    """List ACCOUNT_SLUG's tokens (ids and names, never the tokens)."""
    from connectors.store import RecordStore
    from pipelines.api.tokens import list_tokens

    store = RecordStore()
    for row in list_tokens(store, store.account_id(account_slug)):
        state = f"revoked {row['revoked_at']:%Y-%m-%d}" if row["revoked_at"] else "active"
        click.echo(f"{row['id']}  {row['name']}  created {row['created_at']:%Y-%m-%d}  {state}")


def _print_history(rows: list[dict]) -> None:
    # seed 002's import history columns
    headers = ("date/time", "type", "file", "created", "updated", "skipped", "errors", "status", "id")
    table = []
    for row in rows:
        when = row.get("started_at") or row.get("date_time") or row.get("created_at")
        table.append(
            (
                f"{when:%Y-%m-%d %H:%M:%S}" if hasattr(when, "strftime") else str(when or ""),
                str(row.get("type", "")),
                str(row.get("file") or "--"),
                *(str(row.get(k, 0)) for k in ("created", "updated", "skipped", "errors")),
                str(row.get("status", "")),
                str(row.get("id") or row.get("import_id") or ""),
            )
        )
    widths = [max(len(h), *(len(r[i]) for r in table)) if table else len(h) for i, h in enumerate(headers)]
    click.echo("  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip())
    for r in table:
        click.echo("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())


def _launch(path: str, entity: str, account: str, options: object, mapping: str | None) -> object:
    from datetime import datetime, timezone

    import dagster as dg

    from pipelines.imports.launch import failure_message, launch_import

    use_local_dagster_home()
    with dg.DagsterInstance.get() as instance:
        run_id, result = launch_import(path, entity, account, options, instance=instance, mapping_path=mapping or "")
        if result is None:
            click.echo(f"dagster run {run_id} failed: {failure_message(instance, run_id)}", err=True)
            sys.exit(1)
    _print_history(
        [{"started_at": datetime.now(timezone.utc), "type": result.type, "file": result.file, "created": result.created, "updated": result.updated,
          "skipped": result.skipped, "errors": result.errors, "status": result.status, "id": result.import_id}]
    )
    if result.duplicate_of:
        click.echo(f"identical content was already imported by {result.duplicate_of}: nothing written")
    if result.errors and result.failed_rows_path:
        click.echo(f"failed rows ({result.errors}): {result.failed_rows_path}")
    if result.dry_run:
        click.echo("dry run: nothing was written")
    click.echo(f"dagster run: {run_id}")
    return result


@main.command("import")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.option("--entity", type=click.Choice(["applications", "candidates", "jobs", "contracts"]), default="applications", show_default=True)
@click.option("--account", default=None, help="Account slug (default $BULKOPS_ACCOUNT or demo).")
@click.option("--mapping", type=click.Path(exists=True, dir_okay=False), default=None, help="YAML field mapping.")
@click.option("--on-duplicate", type=click.Choice(["skip", "update", "create", "flag"]), default="update", show_default=True)
@click.option("--duplicate-keys", default="external_id,email", show_default=True, help="Comma-separated match keys.")
@click.option("--default-stage", default="applied", show_default=True)
@click.option("--error-policy", type=click.Choice(["skip", "abort", "threshold"]), default="skip", show_default=True)
@click.option("--error-threshold", type=float, default=0.1, show_default=True)
@click.option("--batch-size", type=int, default=5000, show_default=True)
@click.option("--no-create-missing-jobs", is_flag=True, help="Reject rows naming an unknown job instead of creating it.")
@click.option("--case-sensitive-keys", is_flag=True,
              help="Match job codes and external ids with their case (by default ENG-1 and eng-1 are one key).")
@click.option("--encoding", default=None)
@click.option("--delimiter", default=None)
@click.option("--format", "file_format", type=click.Choice(["csv", "parquet"]), default=None)
@click.option("--force", is_flag=True, help="Import even when identical content was already imported.")
@click.option("--dry-run", is_flag=True, help="Report what would happen; write nothing.")
@click.option("--submit", is_flag=True,
              help="Queue the run on the running Dagster webserver ($BULKOPS_DAGSTER_GRAPHQL_URL, default "
                   "http://127.0.0.1:3000) instead of running it here: the daemon starts it under the run queue's limits.")
@click.option("--no-wait", is_flag=True, help="With --submit: print the run id and return at once.")
@click.option("--timeout", type=float, default=None, help="With --submit: stop waiting after SECONDS (the run goes on); exit 2.")
def import_file(path: str, entity: str, account: str | None, mapping: str | None, on_duplicate: str, duplicate_keys: str,
                default_stage: str, error_policy: str, error_threshold: float, batch_size: int, no_create_missing_jobs: bool,
                encoding: str | None, delimiter: str | None, file_format: str | None, force: bool, dry_run: bool,
                submit: bool, no_wait: bool, timeout: float | None, case_sensitive_keys: bool) -> None:
    """Import PATH through the Dagster import_job (the run shows in the UI).

    By default the run executes in this process, at once. With --submit it is queued on the
    Dagster deployment like a sensor's run: at most two imports run at once there, and the run
    worker must see PATH.
    """
    from pipelines.imports.options import ImportOptions

    options = ImportOptions(
        entity=entity, duplicate_keys=tuple(k.strip() for k in duplicate_keys.split(",") if k.strip()),
        on_duplicate=on_duplicate, default_stage=default_stage, error_policy=error_policy, error_threshold=error_threshold,
        batch_size=batch_size, dry_run=dry_run, create_missing_jobs=not no_create_missing_jobs, encoding=encoding,
        delimiter=delimiter, file_format=file_format, force=force, actor=f"cli:{os.environ.get('USER', 'bulkops')}",
        case_sensitive_keys=case_sensitive_keys,
    )
    if submit:
        _submit(path, entity, account or settings.default_account(), options, mapping, wait=not no_wait, timeout=timeout)
    else:
        _launch(path, entity, account or settings.default_account(), options, mapping)


def _submit(path: str, entity: str, account: str, options: object, mapping: str | None, *, wait: bool,
            timeout: float | None) -> None:
    from pipelines.imports.engine import list_imports
    from pipelines.imports.launch import run_page, submit_import, wait_for_run

    try:
        run_id = submit_import(path, entity, account, options, mapping_path=str(Path(mapping).resolve()) if mapping else "")
    except (RuntimeError, OSError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"queued dagster run: {run_id}")
    if not wait:
        return
    try:
        status = wait_for_run(run_id, timeout=timeout)
    except TimeoutError as exc:
        click.echo(f"{exc}; it goes on (bulkops imports list shows it when done)", err=True)
        sys.exit(2)
    try:
        store, account_id = _store_and_account(account)
    except LookupError:
        rows = []  # the run failed on it: the run's page says so
    else:
        rows = list_imports(store, account_id, dagster_run_id=run_id)
        store.dispose()
    if rows:
        _print_history(rows)
        if rows[0].get("error_message"):
            click.echo(rows[0]["error_message"], err=True)
        if rows[0].get("errors") and rows[0].get("failed_rows_path"):
            click.echo(f"failed rows ({rows[0]['errors']}): {rows[0]['failed_rows_path']}")
    click.echo(f"dagster run {run_id}: {status}")
    if status != "SUCCESS":
        click.echo(f"why: {run_page(run_id)}", err=True)
        sys.exit(1)


def _store_and_account(account: str | None):  # type: ignore[no-untyped-def]
    """The record store and the id of ACCOUNT (default $BULKOPS_ACCOUNT or demo)."""
    from connectors.store import RecordStore

    store = RecordStore()
    return store, store.account_id(account or settings.default_account())


@main.group()
def imports() -> None:
    """Import history and rollback."""


@imports.command("list")
@click.option("--type", "type_", type=click.Choice(["applications", "candidates", "jobs", "contracts"]), default=None)
@click.option("--account", default=None, help="Account slug (default $BULKOPS_ACCOUNT or demo).")
@click.option("--limit", type=int, default=50, show_default=True)
def imports_list(type_: str | None, account: str | None, limit: int) -> None:
    """Import history, newest first (seed 002's columns)."""
    from pipelines.imports.engine import list_imports

    store, account_id = _store_and_account(account)
    _print_history(list_imports(store, account_id, type=type_, limit=limit))


@imports.command("rollback")
@click.argument("import_id")
@click.option("--account", default=None, help="Account slug (default $BULKOPS_ACCOUNT or demo).")
@click.option("--force", is_flag=True, help="Also undo records something else changed after the import (default: leave them).")
def imports_rollback(import_id: str, account: str | None, force: bool) -> None:
    """Undo import IMPORT_ID: delete what it created, restore what it updated (audited).

    Records changed after the import by something else (another import, a bulk job) are
    conflicts: left as they are and counted, unless --force.
    """
    import uuid

    from pipelines.imports.engine import ImportFailed, rollback_import

    store, account_id = _store_and_account(account)
    try:
        outcome = rollback_import(store, account_id, uuid.UUID(import_id),
                                  actor=f"cli:{os.environ.get('USER', 'bulkops')}", force=force)
    except ImportFailed as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"import {outcome['import_id']}: {outcome['status']}")
    for what in ("deleted", "restored", "kept", "conflicts"):
        counts = {k: v for k, v in outcome.get(what, {}).items() if v}
        click.echo(f"  {what}: " + (", ".join(f"{k} {v}" for k, v in counts.items()) or "none"))
    if any(outcome.get("conflicts", {}).values()):
        click.echo("  conflicts were changed after the import and are left as they are; run it again with --force to undo them too")


@main.command("demo")
@click.option("--file", "path", default="samples/applications.csv", show_default=True, type=click.Path(dir_okay=False))
def demo(path: str) -> None:
    """Migrate the record store, create account `demo`, import the sample applications through import_job."""
    from connectors.store import RecordStore, make_engine, migrate

    engine = make_engine()
    migrate.upgrade(engine)
    engine.dispose()
    RecordStore().ensure_account("demo")
    sample = Path(path)
    if not sample.is_file():
        sample = Path(__file__).resolve().parent.parent / path
    for entity in ("applications", "candidates", "jobs", "contracts"):
        (settings.dropzone_dir() / entity).mkdir(parents=True, exist_ok=True)
    _launch(str(sample), "applications", "demo", None, None)
    click.echo(f"drop more files into {settings.dropzone_dir()}/<entity>/ while the UI runs")
    click.echo("open the UI with: make dev  (or: DAGSTER_HOME=var/dagster .venv/bin/dagster dev -w workspace.yaml)")


class _JobsGroup(click.Group):
    """Service errors (unknown job, bad params, wrong state) print as one line, exit 1."""

    def invoke(self, ctx: click.Context):  # type: ignore[no-untyped-def]
        from pipelines.bulk.service import BulkJobError

        try:
            return super().invoke(ctx)
        except BulkJobError as exc:
            raise click.ClickException(f"{exc.code}: {exc}") from exc


@main.group(cls=_JobsGroup)
def jobs() -> None:
    """Bulk jobs (seed 001): create, watch, cancel, roll back — each run is a Dagster run."""


def _echo_job(job: dict) -> None:
    click.echo(json.dumps(job, indent=2, default=str))


def _launch_and_show(store, account_id, job_id: str, wait: bool) -> None:  # type: ignore[no-untyped-def]
    import uuid

    from pipelines.bulk import launch, service

    run_id = launch.launch_bulk_job(uuid.UUID(job_id), database_url=settings.database_url())
    if wait:
        launch.wait_for_local_run(run_id)
    _echo_job(service.get_job(store, account_id, uuid.UUID(job_id)))


@jobs.command("create")
@click.argument("entity_type")
@click.argument("operation")
@click.option("--ids", "ids_file", type=click.File("r"), default="-", show_default=True,
              help="File with one record id per line (first CSV column is used; a header line is skipped).")
@click.option("--params", default="{}", help='Operation params as JSON, e.g. \'{"status": "rejected"}\'.')
@click.option("--mode", type=click.Choice(["execute", "preview", "dry_run"]), default="execute", show_default=True)
@click.option("--account", default=None, help="Account slug (default $BULKOPS_ACCOUNT or demo).")
@click.option("--wait/--no-wait", default=True, show_default=True, help="Wait for the run and print the finished job.")
def jobs_create(entity_type: str, operation: str, ids_file, params: str, mode: str, account: str | None, wait: bool) -> None:  # type: ignore[no-untyped-def]
    """Create a bulk job on ENTITY_TYPE records and launch its Dagster run (not for --mode preview)."""
    import uuid

    from pipelines.bulk import service

    ids: list[uuid.UUID] = []
    for n, line in enumerate(ids_file, start=1):
        cell = line.split(",", 1)[0].strip().strip('"')
        if not cell:
            continue
        try:
            ids.append(uuid.UUID(cell))
        except ValueError:
            if n == 1:
                continue  # header
            raise click.BadParameter(f"line {n}: {cell!r} is not a uuid", param_hint="--ids") from None
    use_local_dagster_home()
    store, account_id = _store_and_account(account)
    job = service.create_job(store, account_id, created_by=None, entity_type=entity_type, operation=operation,
                             entity_ids=ids, params=json.loads(params), mode=mode)
    if mode == "preview":
        _echo_job(service.preview(store, account_id, uuid.UUID(job["id"]), limit=20))
        click.echo(f"confirm with: bulkops jobs confirm {job['id']} --plan-id <plan_id>")
        return
    _launch_and_show(store, account_id, job["id"], wait)


@jobs.command("confirm")
@click.argument("job_id")
@click.option("--plan-id", required=True)
@click.option("--account", default=None)
@click.option("--wait/--no-wait", default=True, show_default=True)
def jobs_confirm(job_id: str, plan_id: str, account: str | None, wait: bool) -> None:
    """Execute exactly the previewed plan of JOB_ID."""
    import uuid

    from pipelines.bulk import service

    use_local_dagster_home()
    store, account_id = _store_and_account(account)
    service.confirm(store, account_id, uuid.UUID(job_id), plan_id=plan_id)
    _launch_and_show(store, account_id, job_id, wait)


@jobs.command("get")
@click.argument("job_id")
@click.option("--account", default=None)
def jobs_get(job_id: str, account: str | None) -> None:
    """Show bulk job JOB_ID (seed 001's job object)."""
    import uuid

    from pipelines.bulk import service

    store, account_id = _store_and_account(account)
    _echo_job(service.get_job(store, account_id, uuid.UUID(job_id)))


@jobs.command("list")
@click.option("--status", default=None)
@click.option("--limit", type=int, default=20, show_default=True)
@click.option("--account", default=None)
def jobs_list(status: str | None, limit: int, account: str | None) -> None:
    """Bulk jobs of the account, newest first."""
    from pipelines.bulk import service

    store, account_id = _store_and_account(account)
    click.echo(f"{'created_at':<20} {'entity_type':<12} {'operation':<20} {'status':<10} {'total':>8} {'done':>8} {'failed':>7}  id")
    for j in service.list_jobs(store, account_id, status=status, limit=limit):
        click.echo(f"{str(j['created_at'])[:19]:<20} {j['entity_type']:<12} {j['operation']:<20} {j['status']:<10} "
                   f"{j['total_count']:>8} {j['processed_count']:>8} {j['failed_count']:>7}  {j['id']}")


@jobs.command("cancel")
@click.argument("job_id")
@click.option("--account", default=None)
def jobs_cancel(job_id: str, account: str | None) -> None:
    """Cancel JOB_ID: a pending job at once, a running one at its next batch (its run is terminated)."""
    import uuid

    from pipelines.bulk import launch, service

    use_local_dagster_home()
    store, account_id = _store_and_account(account)
    job = service.request_cancel(store, account_id, uuid.UUID(job_id))
    if job.get("dagster_run_id"):
        launch.terminate_bulk_job_run(job["dagster_run_id"])
    _echo_job(job)


@jobs.command("rollback")
@click.argument("job_id")
@click.option("--account", default=None)
@click.option("--wait/--no-wait", default=True, show_default=True)
def jobs_rollback(job_id: str, account: str | None, wait: bool) -> None:
    """Undo completed or cancelled JOB_ID from its before-images, as a new audited job."""
    import uuid

    from pipelines.bulk import service

    use_local_dagster_home()
    store, account_id = _store_and_account(account)
    job = service.create_rollback(store, account_id, uuid.UUID(job_id))
    _launch_and_show(store, account_id, job["id"], wait)


@jobs.command("failed")
@click.argument("job_id")
@click.option("--account", default=None)
def jobs_failed(job_id: str, account: str | None) -> None:
    """Failed records of JOB_ID as CSV (entity id and error per record)."""
    import uuid

    from pipelines.bulk import service

    store, account_id = _store_and_account(account)
    for line in service.iter_failed_items_csv(store, account_id, uuid.UUID(job_id)):
        click.echo(line, nl=False)


def run() -> None:
    """Console entry point: known user errors print one line, not a traceback."""
    from connectors.store import AccountNotFound, SchemaOutOfDate

    try:
        main(standalone_mode=True)
    except (SchemaOutOfDate, AccountNotFound) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
