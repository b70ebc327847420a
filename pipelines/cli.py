"""The `bulkops` command line: database, accounts, imports, bulk jobs, the demo, the API server.

Exit codes: 0 ok; 1 the operation failed (one `error: ` line on stderr says why); 2 bad usage;
3 `import --fail-on-rejected` and rows were rejected; 4 `import --submit --timeout` ran out
before the run ended; 70 an unexpected error (a bug: `-v` or BULKOPS_DEBUG=1 shows the traceback);
130 interrupted. docs/cli.md lists every command.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from datetime import UTC
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from connectors import settings
from pipelines.instance import use_local_dagster_home

if TYPE_CHECKING:
    from pipelines.imports.assets import ImportConfig

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_REJECTED = 3
EXIT_TIMEOUT = 4
EXIT_UNEXPECTED = 70  # sysexits' EX_SOFTWARE
EXIT_INTERRUPTED = 130
DEBUG_ENV = "BULKOPS_DEBUG"


class CommandFailed(click.ClickException):
    """An operation failed: one `error: ` line on stderr and exit code `exit_code` (default 1)."""

    exit_code = EXIT_FAILED

    def __init__(self, message: str, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


def warn(message: str) -> None:
    """A `warning: ` line on stderr."""
    click.echo(f"warning: {message}", err=True)


def _debug() -> bool:
    return os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no")


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _lower_first(text: str) -> str:
    # click's "Invalid value for ..." reads "invalid value for ..." after "error: "; "UUID ..." stays
    return text[0].lower() + text[1:] if len(text) > 1 and text[0].isupper() and text[1].islower() else text


def explain(exc: BaseException) -> tuple[str, int] | None:
    """The one-line message and exit code of an expected error; None for an unexpected one.

    Expected: the product's own errors (imports, files, accounts, bulk jobs, schema, entities,
    params, rollbacks, tokens), files that cannot be opened, and record store failures.
    """
    import sqlalchemy as sa
    from alembic.util.exc import CommandError as MigrationError

    from connectors.files import FileReadError
    from connectors.store import AccountNotFound, SchemaOutOfDate, UnsupportedDatabase
    from connectors.store.bulk import ParamsError
    from connectors.store.changes import RollbackRefused
    from connectors.store.errors import describe_error, is_unreachable
    from connectors.store.registry import UnknownEntity
    from pipelines.api.tokens import TokenError
    from pipelines.bulk.service import BulkJobError, JobNotFound
    from pipelines.imports.errors import ImportFailed

    if isinstance(exc, JobNotFound):
        return f"{exc.message} in this account (bulkops bulk-jobs list shows its bulk jobs)", EXIT_FAILED
    if isinstance(exc, (ImportFailed, BulkJobError)):
        return exc.message, EXIT_FAILED
    if isinstance(exc, RollbackRefused):
        return f"cannot roll back: {exc}", EXIT_FAILED
    from pipelines.syncs.config import SyncConfigError
    from pipelines.syncs.engine import SyncFailed

    if isinstance(exc, SyncFailed):
        return exc.message, EXIT_FAILED
    if isinstance(exc, SyncConfigError):
        return str(exc), EXIT_FAILED
    if isinstance(
        exc,
        (FileReadError, AccountNotFound, SchemaOutOfDate, UnsupportedDatabase, UnknownEntity, ParamsError, TokenError),
    ):
        return str(exc.args[0] if exc.args else exc), EXIT_FAILED
    if isinstance(exc, MigrationError):
        return f"cannot migrate the record store: {exc} (bulkops db current shows where it is)", EXIT_FAILED
    if isinstance(exc, OSError) and exc.filename is not None and not isinstance(exc, ConnectionError):
        return f"cannot open {exc.filename}: {exc.strerror or exc}", EXIT_FAILED
    if isinstance(exc, (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)):
        return str(exc), EXIT_FAILED
    if isinstance(exc, sa.exc.SQLAlchemyError) or is_unreachable(exc):
        url = settings.database_url()
        text = describe_error(exc, url=url)
        if is_unreachable(exc):
            text += "; check BULKOPS_DATABASE_URL and that the server is running"
        return text, EXIT_FAILED
    return None


class BulkopsGroup(click.Group):
    """The top-level group: every error ends as one `error: ` line on stderr and a documented exit code.

    Click's own usage errors keep exit code 2 but print as one line too. With `-v` or
    BULKOPS_DEBUG=1 the traceback is printed first.
    """

    verbose = False

    def main(
        self,
        args: Any = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        BulkopsGroup.verbose = _debug()
        try:
            result = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.exceptions.Exit as exc:
            sys.exit(exc.exit_code)
        except click.UsageError as exc:
            hint = f" (see: {exc.ctx.command_path} --help)" if exc.ctx is not None else ""
            click.echo(f"error: {_lower_first(_one_line(exc.format_message()))}{hint}", err=True)
            sys.exit(exc.exit_code)
        except BrokenPipeError:
            # the reader went away (`bulkops bulk-jobs failed ID | head`): no traceback when stdout is flushed at exit
            with contextlib.suppress(OSError, ValueError, AttributeError):
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(EXIT_FAILED)
        except (click.exceptions.Abort, KeyboardInterrupt):
            click.echo("error: interrupted", err=True)
            sys.exit(EXIT_INTERRUPTED)
        except click.ClickException as exc:
            self._traceback()
            click.echo(f"error: {_one_line(exc.format_message())}", err=True)
            sys.exit(exc.exit_code)
        except Exception as exc:
            self._traceback()
            known = explain(exc)
            if known is not None:
                message, code = known
                click.echo(f"error: {_one_line(message)}", err=True)
                sys.exit(code)
            from connectors.store.errors import describe_error

            hint = "" if self.verbose else "; run with bulkops -v (or BULKOPS_DEBUG=1) for the traceback"
            click.echo(f"error: unexpected failure: {_one_line(describe_error(exc))}{hint}", err=True)
            sys.exit(EXIT_UNEXPECTED)
        if isinstance(result, int) and result:
            sys.exit(result)
        sys.exit(0)

    def _traceback(self) -> None:
        if self.verbose:
            traceback.print_exc(file=sys.stderr)


class _Json(click.ParamType):
    """A JSON value given on the command line: bad JSON is a usage error naming the option."""

    name = "json"

    def parse(self, value: Any, param: Any, ctx: Any) -> Any:
        try:
            return json.loads(value)
        except json.JSONDecodeError as exc:
            self.fail(f"not valid JSON ({exc.msg} at character {exc.pos}): {value!r}", param, ctx)


class JsonObject(_Json):
    """A JSON object given on the command line."""

    def convert(self, value: Any, param: Any, ctx: Any) -> dict:
        if isinstance(value, dict):
            return value
        parsed = self.parse(value, param, ctx)
        if not isinstance(parsed, dict):
            self.fail(f'expected a JSON object such as \'{{"status": "rejected"}}\', got {value!r}', param, ctx)
        return parsed


@click.group("bulkops", cls=BulkopsGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="bulkops", prog_name="bulkops", message="%(prog)s %(version)s")
@click.option(
    "-v",
    "--verbose",
    is_flag=True,
    help=f"Show tracebacks and the Dagster event log of a failed import's run (also ${DEBUG_ENV}=1).",
)
def main(verbose: bool) -> None:
    """bulkops: bulk operations on recruiting and HR records, run by Dagster.

    Exit codes: 0 ok, 1 the operation failed, 2 bad usage, 3 rows rejected (import
    --fail-on-rejected), 4 waiting timed out (import --submit --timeout), 70 unexpected error.
    """
    if verbose:
        BulkopsGroup.verbose = True


@main.group()
def db() -> None:
    """Record store schema (Alembic migrations)."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True, help="Target revision (head: the latest).")
def db_upgrade(revision: str) -> None:
    """Apply migrations up to REVISION."""
    from connectors.store import make_engine, migrate

    engine = make_engine()
    migrate.upgrade(engine, revision)
    click.echo(
        f"record store {engine.url.render_as_string(hide_password=True)} is at {migrate.current_revision(engine)}"
    )


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


@accounts.group("values")
def accounts_values() -> None:
    """Allowed status and stage values of an account (the defaults unless set)."""


class _BadUsage(click.ClickException):
    """Bad usage in one line (no usage text), exit code 2."""

    exit_code = 2


def _values_call(action, account: str, *args):  # type: ignore[no-untyped-def]
    from connectors.store import RecordStore
    from connectors.store import accounts as account_settings

    store = RecordStore()
    try:
        return action(store, store.account_id(account), *args)
    except account_settings.ValueSetError as exc:
        raise _BadUsage(str(exc)) from None
    finally:
        store.dispose()


def _echo_value_set(value_set) -> None:  # type: ignore[no-untyped-def]
    click.echo(f"{value_set.key} ({value_set.source}): {', '.join(value_set.values)}")


@accounts_values.command("show")
@click.argument("account")
@click.argument("key", required=False, metavar="[ENTITY.FIELD]")
def accounts_values_show(account: str, key: str | None) -> None:
    """Show the values in force for ACCOUNT: every field, or ENTITY.FIELD."""
    from connectors.store import accounts as account_settings

    def show(store, account_id):  # type: ignore[no-untyped-def]
        with store.engine.connect() as conn:
            return account_settings.value_sets(conn, account_id, [key] if key else None)

    for value_set in _values_call(show, account):
        _echo_value_set(value_set)


@accounts_values.command("set")
@click.argument("account")
@click.argument("key", metavar="ENTITY.FIELD")
@click.argument("values", nargs=-1, required=True)
def accounts_values_set(account: str, key: str, values: tuple[str, ...]) -> None:
    """Allow exactly VALUES for ENTITY.FIELD in ACCOUNT (replaces the defaults)."""
    from connectors.store import accounts as account_settings

    _echo_value_set(_values_call(account_settings.set_value_set, account, key, values))


@accounts_values.command("reset")
@click.argument("account")
@click.argument("key", metavar="ENTITY.FIELD")
def accounts_values_reset(account: str, key: str) -> None:
    """Go back to the default values of ENTITY.FIELD in ACCOUNT."""
    from connectors.store import accounts as account_settings

    _echo_value_set(_values_call(account_settings.reset_value_set, account, key))


@main.command("api")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--workers", default=1, show_default=True, type=int, help="uvicorn worker processes.")
@click.option("--max-body-mb", default=None, type=float, help="Largest request body in MiB (default 64).")
@click.option(
    "--write-openapi", type=click.Path(dir_okay=False), default=None, help="Write the OpenAPI schema there and exit."
)
def api_serve(host: str, port: int, workers: int, max_body_mb: float | None, write_openapi: str | None) -> None:
    """Serve the bulk-job HTTP API with uvicorn (OpenAPI schema at /api/openapi.json)."""
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
@click.option(
    "--user-id", type=click.UUID, default=None, help="User recorded as created_by on bulk jobs made with the token."
)
def tokens_create(account_slug: str, name: str, user_id: uuid.UUID | None) -> None:
    """Create a token for ACCOUNT_SLUG and print it once (only its digest is stored)."""
    from connectors.store import RecordStore
    from pipelines.api.tokens import create_token

    store = RecordStore()
    issued = create_token(store, store.account_id(account_slug), name=name, user_id=user_id)
    click.echo(f"token id {issued.id} ({name}); the token, shown once:", err=True)
    click.echo(issued.token)


@tokens.command("revoke")
@click.argument("token_or_id")
def tokens_revoke(token_or_id: str) -> None:
    """Revoke a token by its id or by the token itself."""
    from connectors.store import RecordStore
    from pipelines.api.tokens import revoke_token

    if not revoke_token(RecordStore(), token_or_id):
        raise CommandFailed(f"no active token matches {token_or_id!r} (bulkops tokens list ACCOUNT shows the ids)")
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
    from connectors.store import history

    # the import history's columns (type in the users' word); a line under a row that did not complete says why
    headers = ("date/time", "type", "file", "created", "updated", "skipped", "errors", "status", "id")
    table = []
    for row in rows:
        when = row.get("started_at") or row.get("date_time") or row.get("created_at")
        table.append(
            (
                f"{when:%Y-%m-%d %H:%M:%S}" if hasattr(when, "strftime") else str(when or ""),
                history.type_word(row.get("type")),
                str(row.get("file") or "--"),
                *(str(row.get(k, 0)) for k in ("created", "updated", "skipped", "errors")),
                str(row.get("status", "")),
                str(row.get("id") or row.get("import_id") or ""),
            )
        )
    widths = [max(len(h), *(len(r[i]) for r in table)) if table else len(h) for i, h in enumerate(headers)]
    click.echo("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=False)).rstrip())
    for row, r in zip(rows, table, strict=False):
        click.echo("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)).rstrip())
        if row.get("error_message") and row.get("status") != "completed":
            click.echo(f"    {row['status']}: {_one_line(row['error_message'])}")


def _launch(path: str, entity: str, account: str, config: object = None, *, fail_on_rejected: bool = False) -> object:
    from datetime import datetime

    import dagster as dg

    from pipelines import runs
    from pipelines.imports.launch import failure_message, import_result, start_import

    # an unknown account or an unreachable record store is told before a run is made
    store, _ = _store_and_account(account)
    store.dispose()
    use_local_dagster_home()
    with dg.DagsterInstance.get() as instance:
        try:
            run_id = start_import(
                path, entity, account, config, instance=instance, database_url=settings.database_url()
            )
        except RuntimeError as exc:
            raise CommandFailed(f"cannot launch the import: {exc}") from exc
        try:
            status = runs.wait_for_run(run_id, instance=instance)
        except KeyboardInterrupt:
            # Ctrl-C cancels the import as Terminate in the UI does: committed batches stay
            click.echo(f"terminating dagster run {run_id}", err=True)
            runs.terminate_run(run_id, instance=instance)
            runs.wait_for_run(run_id, instance=instance, timeout=120)
            raise
        result = import_result(instance, run_id) if status == dg.DagsterRunStatus.SUCCESS else None
        if result is None:
            if BulkopsGroup.verbose:
                for record in instance.all_logs(run_id):
                    click.echo(f"{record.step_key or 'run'}: {record.message}", err=True)
            raise CommandFailed(f"{failure_message(instance, run_id)} (dagster run {run_id})")
    _print_history(
        [
            {
                "started_at": datetime.now(UTC),
                "type": result.type,
                "file": result.file,
                "created": result.created,
                "updated": result.updated,
                "skipped": result.skipped,
                "errors": result.errors,
                "status": result.status,
                "id": result.import_id,
            }
        ]
    )
    if result.duplicate_of:
        click.echo(f"identical content was already imported by {result.duplicate_of}: nothing written")
    if result.errors and result.failed_rows_path:
        click.echo(f"failed rows ({result.errors}): {result.failed_rows_path}")
    if result.dry_run:
        for m in result.details.get("mapping", []):
            click.echo(f"  column {m['column']!r} -> {m['target']} ({m['how']})")
        if result.details.get("entity_fit"):
            fit = ", ".join(f"{e} {n}" for e, n in result.details["entity_fit"].items())
            click.echo(f"  columns each entity would map: {fit}")
        for col, how in result.details.get("date_formats", {}).items():
            click.echo(f"  dates in {col!r}: {how}")
        click.echo("dry run: nothing was written")
    click.echo(f"dagster run: {run_id}")
    if fail_on_rejected and result.errors:
        raise CommandFailed(_rejected(result.errors, result.rows_read, result.failed_rows_path), EXIT_REJECTED)
    return result


def _rejected(errors: int, rows_read: int, failed_rows_path: str | None) -> str:
    where = f"; fix them in {failed_rows_path} and import that file" if failed_rows_path else ""
    return f"{errors} of {rows_read} rows were rejected (--fail-on-rejected){where}"


class JsonRules(_Json):
    """A JSON object, or a list of them, given on the command line (auto-advance rules)."""

    def convert(self, value: Any, param: Any, ctx: Any) -> list:
        if isinstance(value, list):
            return value
        parsed = self.parse(value, param, ctx)
        if isinstance(parsed, dict):
            parsed = [parsed]
        if not isinstance(parsed, list) or not all(isinstance(r, dict) for r in parsed):
            self.fail(f"expected a JSON object or a list of them, got {value!r}", param, ctx)
        return parsed


@dataclass(frozen=True)
class _Spelling:
    """How `bulkops import` spells an import option that is not `--<field-name>` of the field's type."""

    flag: str | None = None
    note: str = ""  # said after the field's description
    to_config: Callable[[Any], Any] | None = None
    option: dict[str, Any] = dataclass_field(default_factory=dict)  # more click.Option arguments


def _comma_list(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


def _cli_actor() -> str:
    return f"cli:{os.environ.get('USER', 'bulkops')}"


_IMPORT_SPELLINGS: dict[str, _Spelling] = {
    # the command always knows the entity: the file's partition key names it
    "entity": _Spelling(option={"default": "applications", "show_default": True}),
    "mapping_path": _Spelling(
        "--mapping",
        to_config=lambda p: str(Path(p).resolve()),
        option={"type": click.Path(exists=True, dir_okay=False)},
    ),
    "file_format": _Spelling("--format"),
    "decode_fallback": _Spelling("--decode-errors", option={"metavar": "ENCODING"}),
    "comment": _Spelling(option={"metavar": "CHARS"}),
    "skip_rows": _Spelling(option={"type": click.IntRange(min=0)}),
    # '' always spells empty, whatever the list says
    "null_values": _Spelling(
        note="Comma-separated; '' for none.", to_config=lambda t: ["", *(v for v in t.split(",") if v)]
    ),
    "max_cell_bytes": _Spelling(
        "--max-cell-kib",
        note="Given in KiB.",
        to_config=lambda kib: kib * 1024,
        option={"type": click.IntRange(min=1), "default": 128, "show_default": True},
    ),
    "actor": _Spelling(option={"default": _cli_actor, "show_default": "cli:$USER"}),
}
# first in `bulkops import --help`; the rest follow in the order ImportConfig declares them
_IMPORT_FIRST = ("entity", "account", "mapping_path", "mapping_yaml")


class ImportOption(click.Option):
    """A flag of `bulkops import` made from a field of `ImportConfig`: `to_config` turns its value into the field's."""

    def __init__(self, decls: list[str], *, to_config: Callable[[Any], Any], **kwargs: Any) -> None:
        super().__init__(decls, **kwargs)
        self.to_config = to_config


def _import_option(name: str, info: Any, allowed: tuple[str, ...] | None) -> ImportOption:
    spelling = _IMPORT_SPELLINGS.get(name, _Spelling())
    # a default made when the config is (the account) is left to the config
    default = None if info.default_factory is not None else info.default
    annotation = info.annotation
    args = [a for a in getattr(annotation, "__args__", ()) if a is not type(None)]
    base = args[0] if args and getattr(annotation, "__origin__", None) is not list else annotation
    flag = f"--{name.replace('_', '-')}"
    note, to_config = "", (lambda v: v)
    kwargs: dict[str, Any]
    if annotation is bool:
        # a switch on by default is turned off by --no-<name>
        if default:
            flag, note = f"--no-{name.replace('_', '-')}", "This flag turns it off."
        kwargs = {"is_flag": True, "flag_value": not default, "default": default}
    elif annotation == list[str]:
        note, to_config = "Comma-separated.", _comma_list
        kwargs = {"default": ",".join(v for v in default if v), "metavar": "LIST", "show_default": True}
    elif getattr(annotation, "__origin__", None) is list:
        note = "JSON: an object or a list of them."
        kwargs = {"type": JsonRules(), "default": None}
    elif allowed is not None:
        kwargs = {"type": click.Choice(allowed), "default": default, "show_default": default is not None}
    else:
        kwargs = {"type": base if base in (int, float) else str, "default": None if default == "" else default}
        kwargs["show_default"] = kwargs["default"] is not None
    kwargs.update(spelling.option)
    return ImportOption(
        [spelling.flag or flag, name],
        to_config=spelling.to_config or to_config,
        help=" ".join(t for t in (info.description, spelling.note or note) if t),
        **kwargs,
    )


def import_options() -> list[ImportOption]:
    """The flags of `bulkops import`: one per field of `ImportConfig` but `path` (the PATH argument).

    Flag, help (the field's description), choices, type and default come from the field;
    `_IMPORT_SPELLINGS` holds where the command spells one otherwise.
    """
    from pipelines.imports.assets import ImportConfig
    from pipelines.imports.options import ImportFields, choices

    fields = ImportConfig.model_fields
    names = [*_IMPORT_FIRST, *(n for n in fields if n not in _IMPORT_FIRST and n != "path")]
    return [_import_option(n, fields[n], choices(n) if n in ImportFields.model_fields else None) for n in names]


def import_config(path: str, values: dict[str, Any], params: list[click.Parameter]) -> ImportConfig:
    """The `ImportConfig` of `bulkops import PATH` from its parsed flags (a flag not given keeps the field's default)."""
    import pydantic

    from pipelines.imports.assets import ImportConfig

    fields: dict[str, Any] = {"path": str(Path(path).resolve())}
    for param in params:
        if isinstance(param, ImportOption) and values.get(param.name) is not None:
            fields[param.name] = param.to_config(values[param.name])
    try:
        return ImportConfig(**fields)
    except pydantic.ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(p) for p in error["loc"])
        raise click.BadParameter(error["msg"], param_hint=f"--{where.replace('_', '-')}") from None


class ImportCommand(click.Command):
    """`bulkops import`: its import options are made from `ImportConfig` when the command is first
    parsed or shown, so other commands do not load Dagster."""

    def get_params(self, ctx: click.Context) -> list[click.Parameter]:
        if not any(isinstance(p, ImportOption) for p in self.params):
            self.params[1:1] = import_options()
        return super().get_params(ctx)


@main.command("import", cls=ImportCommand)
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--submit",
    is_flag=True,
    help="Queue the run on the running Dagster webserver ($BULKOPS_DAGSTER_GRAPHQL_URL, default "
    "http://127.0.0.1:3000) instead of running it here: the daemon starts it under the run queue's limits.",
)
@click.option("--no-wait", is_flag=True, help="With --submit: print the run id and return at once.")
@click.option(
    "--timeout",
    type=float,
    default=None,
    help=f"With --submit: stop waiting after SECONDS (the run goes on); exit {EXIT_TIMEOUT}.",
)
@click.option(
    "--fail-on-rejected",
    is_flag=True,
    help=f"Exit {EXIT_REJECTED} when any row was rejected (the import itself completes; default: exit 0).",
)
@click.pass_context
def import_file(
    ctx: click.Context,
    path: str,
    submit: bool,
    no_wait: bool,
    timeout: float | None,
    fail_on_rejected: bool,
    **options: Any,
) -> None:
    """Import PATH through the Dagster job import_job (the run shows in the UI).

    By default the run executes in this process, at once. With --submit it is queued on the
    Dagster deployment like a sensor's run: at most two imports run at once there, and the run
    worker must see PATH.

    Exit codes: 0 the import completed (rejected rows are in the failed-rows file), 1 it failed,
    2 bad usage, 3 rows were rejected and --fail-on-rejected was given, 4 --timeout ran out.
    """
    config = import_config(path, options, ctx.command.get_params(ctx))
    # invalid options stop here, before a run is made; the mapping is read by the run
    config.options(with_mapping=False)
    if submit:
        _submit(path, config, wait=not no_wait, timeout=timeout, fail_on_rejected=fail_on_rejected)
    else:
        _launch(path, config.entity, config.account, config, fail_on_rejected=fail_on_rejected)


def _submit(
    path: str,
    config: ImportConfig,
    *,
    wait: bool,
    timeout: float | None,
    fail_on_rejected: bool = False,
) -> None:
    from pipelines.imports.engine import list_imports
    from pipelines.imports.launch import run_page, submit_import, wait_for_run

    try:
        run_id = submit_import(path, config.entity, config.account, config)
    except RuntimeError as exc:
        raise CommandFailed(f"cannot submit the import: {exc}") from exc
    click.echo(f"queued dagster run: {run_id}")
    if not wait:
        return
    try:
        status = wait_for_run(run_id, timeout=timeout)
    except RuntimeError as exc:
        raise CommandFailed(f"{exc}; dagster run {run_id} may still be going: see {run_page(run_id)}") from exc
    except TimeoutError as exc:
        raise CommandFailed(f"{exc}; it goes on (bulkops imports list shows it when done)", EXIT_TIMEOUT) from exc
    try:
        store, account_id = _store_and_account(config.account)
    except LookupError:
        rows = []  # the run failed on it: the run's page says so
    else:
        rows = list_imports(store, account_id, dagster_run_id=run_id)
        store.dispose()
    if rows:
        _print_history(rows)
        if rows[0].get("errors") and rows[0].get("failed_rows_path"):
            click.echo(f"failed rows ({rows[0]['errors']}): {rows[0]['failed_rows_path']}")
    click.echo(f"dagster run {run_id}: {status}")
    if status != "SUCCESS":
        reason = rows[0].get("error_message") if rows else None
        raise CommandFailed(
            f"dagster run {run_id} ended {status}" + (f": {reason}" if reason else "") + f"; see {run_page(run_id)}"
        )
    if fail_on_rejected and rows and rows[0].get("errors"):
        raise CommandFailed(
            _rejected(rows[0]["errors"], rows[0]["rows_read"], rows[0].get("failed_rows_path")), EXIT_REJECTED
        )


def _store_and_account(account: str | None):  # type: ignore[no-untyped-def]
    """The record store and the id of ACCOUNT (default $BULKOPS_ACCOUNT or demo)."""
    from connectors.store import RecordStore

    store = RecordStore()
    return store, store.account_id(account or settings.default_account())


@main.group()
def imports() -> None:
    """Import history and rollback."""


@imports.command("list")
@click.option(
    "--type",
    "type_",
    type=click.Choice(["applications", "candidates", "applicants", "jobs", "contracts"]),
    default=None,
    help="Only imports of this kind of records (applicants: candidates, as resume imports make them).",
)
@click.option("--account", default=None, help="Account slug (default $BULKOPS_ACCOUNT or demo).")
@click.option("--limit", type=int, default=50, show_default=True, help="At most this many imports.")
def imports_list(type_: str | None, account: str | None, limit: int) -> None:
    """Import history, newest first: date/time, type, file, counts, status; why, under a failed row."""
    from pipelines.imports.engine import list_imports

    store, account_id = _store_and_account(account)
    type_ = {"applicants": "candidates"}.get(type_ or "", type_)
    _print_history(list_imports(store, account_id, type=type_, limit=limit))


@imports.command("show")
@click.argument("import_id", type=click.UUID)
@click.option("--account", default=None, help="Account slug (default $BULKOPS_ACCOUNT or demo).")
def imports_show(import_id: uuid.UUID, account: str | None) -> None:
    """Every field of import IMPORT_ID's history row, the reason of a failure included."""
    from pipelines.imports.engine import get_import

    store, account_id = _store_and_account(account)
    row = get_import(store, account_id, import_id)
    if row is None:
        raise CommandFailed(f"no import {import_id} in this account (bulkops imports list shows its imports)")
    width = max(len(k) for k in row)
    for key, value in row.items():
        if isinstance(value, (dict, list)):
            value = json.dumps(value, default=str, sort_keys=True)
        click.echo(f"{key.ljust(width)}  {'' if value is None else value}")


@imports.command("rollback")
@click.argument("import_id", type=click.UUID)
@click.option("--account", default=None, help="Account slug (default $BULKOPS_ACCOUNT or demo).")
@click.option(
    "--force", is_flag=True, help="Also undo records something else changed after the import (default: leave them)."
)
def imports_rollback(import_id: uuid.UUID, account: str | None, force: bool) -> None:
    """Undo import IMPORT_ID: delete what it created, restore what it updated (audited).

    Records changed after the import by something else (another import, a bulk job) are
    conflicts: left as they are and counted, unless --force.
    """
    from pipelines.imports.engine import rollback_import

    store, account_id = _store_and_account(account)
    outcome = rollback_import(
        store, account_id, import_id, actor=f"cli:{os.environ.get('USER', 'bulkops')}", force=force
    )
    click.echo(f"import {outcome['import_id']}: {outcome['status']}")
    for what in ("deleted", "restored", "kept", "conflicts"):
        counts = {k: v for k, v in outcome.get(what, {}).items() if v}
        click.echo(f"  {what}: " + (", ".join(f"{k} {v}" for k, v in counts.items()) or "none"))
    if any(outcome.get("conflicts", {}).values()):
        warn(
            "conflicts were changed after the import and are left as they are; run it again with --force to undo them too"
        )


@main.command("demo")
@click.option("--file", "path", default="samples/applications.csv", show_default=True, type=click.Path(dir_okay=False))
def demo(path: str) -> None:
    """Migrate the record store, create account `demo`, import the sample applications through the Dagster job import_job."""
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
    _launch(str(sample), "applications", "demo")
    click.echo(f"drop more files into {settings.dropzone_dir()}/<entity>/ while the UI runs")
    click.echo("open the UI with: make dev  (or: DAGSTER_HOME=var/dagster .venv/bin/dagster dev -w workspace.yaml)")


@main.group("bulk-jobs")
def bulk_jobs() -> None:
    """Bulk jobs: create, watch, cancel, roll back; each runs as a Dagster run."""


def _echo_bulk_job(job: dict) -> None:
    click.echo(json.dumps(job, indent=2, default=str))


def _parallel(value: int) -> int:
    # the service's bounds, told as the option's
    from pipelines.bulk import service

    try:
        return service.check_parallel(value)
    except service.InvalidRequest as exc:
        raise click.BadParameter(exc.message, param_hint="--parallel") from None


def _launch_and_show(store, account_id, job_id: uuid.UUID | str, wait: bool) -> None:  # type: ignore[no-untyped-def]
    from pipelines.bulk import launch, service

    job_id = uuid.UUID(str(job_id))
    run_id = launch.launch_bulk_job(job_id, database_url=settings.database_url())
    if wait:
        launch.wait_for_bulk_job_run(run_id)
    _echo_bulk_job(service.get_job(store, account_id, job_id))


@bulk_jobs.command("create")
@click.argument("entity_type")
@click.argument("operation")
@click.option(
    "--ids",
    "ids_file",
    type=click.File("r"),
    default="-",
    show_default=True,
    help="File with one record id per line (first CSV column is used; a header line is skipped).",
)
@click.option(
    "--params", type=JsonObject(), default="{}", help='Operation params as JSON, e.g. \'{"status": "rejected"}\'.'
)
@click.option("--mode", type=click.Choice(["execute", "preview", "dry_run"]), default="execute", show_default=True)
@click.option(
    "--where",
    "where",
    multiple=True,
    metavar="CONDITION",
    help="Instead of --ids: the records matching this filter, repeatable (all must hold): stage=review, "
    "applied_at>=2026-01-01, source~linked, 'stage in review,interview', tags=vip, job=ENG-1 (as bulkops export).",
)
@click.option("--include-deleted", is_flag=True, help="With --where: also select soft-deleted records.")
@click.option(
    "--parallel",
    type=int,
    default=1,
    show_default=True,
    callback=lambda _ctx, _param, value: _parallel(value),
    metavar="N",
    help="Apply the records in N ranges at once (1 to 16), each a step of a sharded_bulk_job run; 1: one cursor.",
)
@click.option("--account", default=None, help="Account slug (default $BULKOPS_ACCOUNT or demo).")
@click.option(
    "--wait/--no-wait", default=True, show_default=True, help="Wait for the run and print the finished bulk job."
)
def bulk_jobs_create(
    entity_type: str,
    operation: str,
    ids_file,
    params: dict,
    mode: str,
    where: tuple[str, ...],
    include_deleted: bool,
    parallel: int,
    account: str | None,
    wait: bool,
) -> None:  # type: ignore[no-untyped-def]
    """Create a bulk job on ENTITY_TYPE records and launch its Dagster run (not for --mode preview).

    The records are the ids read from --ids (default: standard input), or those matching --where.
    """
    from pipelines.bulk import service

    ids: list[uuid.UUID] = []
    by_filter = bool(where)
    if by_filter and click.get_current_context().get_parameter_source("ids_file") != click.core.ParameterSource.DEFAULT:
        raise click.UsageError("give --ids or --where, not both")
    for n, line in enumerate(() if by_filter else ids_file, start=1):
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
    job = service.create_job(
        store,
        account_id,
        created_by=None,
        entity_type=entity_type,
        operation=operation,
        entity_ids=None if by_filter else ids,
        params=params,
        mode=mode,
        filter={"where": list(where), "include_deleted": include_deleted} if by_filter else None,
        parallel=parallel,
    )
    if mode == "preview":
        _echo_bulk_job(service.preview(store, account_id, uuid.UUID(job["id"]), limit=20))
        click.echo(f"confirm with: bulkops bulk-jobs confirm {job['id']} --plan-id <plan_id>")
        return
    _launch_and_show(store, account_id, job["id"], wait)


@bulk_jobs.command("confirm")
@click.argument("job_id", type=click.UUID, metavar="BULK_JOB_ID")
@click.option("--plan-id", required=True, help="The plan id the preview printed.")
@click.option("--account", default=None, help="Account slug (default $BULKOPS_ACCOUNT or demo).")
@click.option(
    "--wait/--no-wait", default=True, show_default=True, help="Wait for the run and print the finished bulk job."
)
def bulk_jobs_confirm(job_id: uuid.UUID, plan_id: str, account: str | None, wait: bool) -> None:
    """Execute exactly the previewed plan of bulk job BULK_JOB_ID."""
    from pipelines.bulk import service

    use_local_dagster_home()
    store, account_id = _store_and_account(account)
    service.confirm(store, account_id, job_id, plan_id=plan_id)
    _launch_and_show(store, account_id, job_id, wait)


@bulk_jobs.command("get")
@click.argument("job_id", type=click.UUID, metavar="BULK_JOB_ID")
@click.option("--account", default=None, help="Account slug (default $BULKOPS_ACCOUNT or demo).")
def bulk_jobs_get(job_id: uuid.UUID, account: str | None) -> None:
    """Show bulk job BULK_JOB_ID as JSON: status, counts, error message, Dagster run."""
    from pipelines.bulk import service

    store, account_id = _store_and_account(account)
    _echo_bulk_job(service.get_job(store, account_id, job_id))


@bulk_jobs.command("list")
@click.option(
    "--status",
    default=None,
    help="Only bulk jobs with this status (pending, processing, completed, failed, cancelled).",
)
@click.option("--limit", type=int, default=20, show_default=True, help="At most this many bulk jobs.")
@click.option("--account", default=None, help="Account slug (default $BULKOPS_ACCOUNT or demo).")
def bulk_jobs_list(status: str | None, limit: int, account: str | None) -> None:
    """Bulk jobs of the account, newest first."""
    from pipelines.bulk import service

    store, account_id = _store_and_account(account)
    click.echo(
        f"{'created_at':<20} {'entity_type':<12} {'operation':<20} {'status':<10} {'total':>8} {'done':>8} {'failed':>7}  id"
    )
    for j in service.list_jobs(store, account_id, status=status, limit=limit):
        click.echo(
            f"{str(j['created_at'])[:19]:<20} {j['entity_type']:<12} {j['operation']:<20} {j['status']:<10} "
            f"{j['total_count']:>8} {j['processed_count']:>8} {j['failed_count']:>7}  {j['id']}"
        )


@bulk_jobs.command("cancel")
@click.argument("job_id", type=click.UUID, metavar="BULK_JOB_ID")
@click.option("--account", default=None, help="Account slug (default $BULKOPS_ACCOUNT or demo).")
def bulk_jobs_cancel(job_id: uuid.UUID, account: str | None) -> None:
    """Cancel bulk job BULK_JOB_ID: a pending one at once, a running one at its next batch (its run is terminated)."""
    from pipelines.bulk import launch, service

    use_local_dagster_home()
    store, account_id = _store_and_account(account)
    job = service.request_cancel(store, account_id, job_id)
    if job.get("dagster_run_id"):
        launch.terminate_bulk_job_run(job["dagster_run_id"])
    _echo_bulk_job(job)


@bulk_jobs.command("rollback")
@click.argument("job_id", type=click.UUID, metavar="BULK_JOB_ID")
@click.option("--account", default=None, help="Account slug (default $BULKOPS_ACCOUNT or demo).")
@click.option(
    "--wait/--no-wait", default=True, show_default=True, help="Wait for the run and print the finished bulk job."
)
def bulk_jobs_rollback(job_id: uuid.UUID, account: str | None, wait: bool) -> None:
    """Undo completed or cancelled bulk job BULK_JOB_ID from its before-images, as a new audited bulk job."""
    from pipelines.bulk import service

    use_local_dagster_home()
    store, account_id = _store_and_account(account)
    job = service.create_rollback(store, account_id, job_id)
    _launch_and_show(store, account_id, job["id"], wait)


@bulk_jobs.command("failed")
@click.argument("job_id", type=click.UUID, metavar="BULK_JOB_ID")
@click.option("--account", default=None, help="Account slug (default $BULKOPS_ACCOUNT or demo).")
def bulk_jobs_failed(job_id: uuid.UUID, account: str | None) -> None:
    """Failed records of bulk job BULK_JOB_ID as CSV (entity id and error per record)."""
    from pipelines.bulk import service

    store, account_id = _store_and_account(account)
    for line in service.iter_failed_items_csv(store, account_id, job_id):
        click.echo(line, nl=False)


@main.command("export")
@click.option(
    "--entity",
    default="applications",
    show_default=True,
    help="Records to export: applications, candidates (contacts), jobs, contracts.",
)
@click.option(
    "--where",
    "where",
    multiple=True,
    metavar="CONDITION",
    help="A filter, repeatable (all must hold): stage=review, applied_at>=2026-01-01, source~linked, "
    "'stage in review,interview', tags=vip, job=ENG-1, source= (empty). docs/exports.md lists them.",
)
@click.option(
    "--columns",
    default="",
    metavar="LIST",
    help="Columns in order, comma-separated, FIELD or FIELD:Header (default: all fields of the entity).",
)
@click.option("--format", "fmt", type=click.Choice(["csv", "xlsx", "parquet"]), default="csv", show_default=True)
@click.option(
    "--out", "out_dir", default=None, help="Destination folder (default $BULKOPS_EXPORTS_DIR or var/exports)."
)
@click.option(
    "--name",
    default=None,
    help="File name template: {entity} {account} {format} {date} {timestamp} {run_id} "
    "(default {entity}-{account}-{timestamp}).",
)
@click.option("--bom", is_flag=True, help="CSV: UTF-8 with a byte-order mark, for Excel.")
@click.option("--no-escape", is_flag=True, help="CSV: leave formula-like cells as they are (files for programs).")
@click.option("--include-deleted", is_flag=True, help="Also export soft-deleted records.")
@click.option("--account", default=None, help="Account slug (default $BULKOPS_ACCOUNT or demo).")
def export_records(
    entity: str,
    where: tuple[str, ...],
    columns: str,
    fmt: str,
    out_dir: str | None,
    name: str | None,
    bom: bool,
    no_escape: bool,
    include_deleted: bool,
    account: str | None,
) -> None:
    """Export an account's filtered records to CSV, Excel or Parquet, as an export_job Dagster run."""
    import dagster as dg
    from pydantic import ValidationError

    from connectors.store import RecordStore
    from pipelines import runs
    from pipelines.exports.config import ExportConfig, ExportRefused
    from pipelines.exports.launch import check, export_result, launch_export
    from pipelines.imports.launch import failure_message

    values: dict[str, Any] = {
        "account": account or settings.default_account(),
        "entity": entity,
        "where": list(where),
        "columns": [c for c in columns.split(",") if c.strip()],
        "format": fmt,
        # the run worker writes the file: it gets the folder as this shell means it
        "out_dir": str(Path(out_dir).resolve() if out_dir else settings.exports_dir()),
        "escape": not no_escape,
        "bom": bom,
        "include_deleted": include_deleted,
    }
    if name:
        values["name"] = name
    try:
        config = ExportConfig(**values)
    except ValidationError as exc:
        raise CommandFailed(exc.errors()[0]["msg"]) from None
    store = RecordStore()
    try:
        account_id = check(store, config)
    except ExportRefused as exc:
        raise CommandFailed(str(exc)) from None
    finally:
        store.dispose()
    use_local_dagster_home()
    with dg.DagsterInstance.get() as instance:
        try:
            run_id = launch_export(
                config, account_id=account_id, database_url=settings.database_url(), instance=instance
            )
        except RuntimeError as exc:
            raise CommandFailed(f"cannot launch the export: {exc}") from exc
        try:
            status = runs.wait_for_run(run_id, instance=instance)
        except KeyboardInterrupt:
            # Ctrl-C cancels the export as Terminate in the UI does: no file is left
            click.echo(f"terminating dagster run {run_id}", err=True)
            runs.terminate_run(run_id, instance=instance)
            runs.wait_for_run(run_id, instance=instance, timeout=120)
            raise
        result = export_result(instance, run_id) if status == dg.DagsterRunStatus.SUCCESS else None
        if result is None:
            raise CommandFailed(f"{failure_message(instance, run_id)} (dagster run {run_id})")
    click.echo(f"exported {result.rows} rows of {result.filter} ({result.account})")
    click.echo(f"file: {result.path} ({result.size} bytes)")
    click.echo(f"dagster run: {run_id}")


# `bulkops jobs` was the group's first name: it keeps working for scripts, unlisted, since "jobs" are job postings
main.add_command(click.Group("jobs", commands=bulk_jobs.commands, help=bulk_jobs.help, hidden=True))


def _echo_failed(store, account_id, change_set_id: uuid.UUID) -> None:  # type: ignore[no-untyped-def]
    from connectors.store import failures

    try:
        chunks = failures.csv_chunks(store, change_set_id, account_id=account_id)
    except (failures.NoSuchChangeSet, failures.FailedRecordsUnavailable) as exc:
        raise CommandFailed(str(exc)) from None
    for chunk in chunks:
        click.echo(chunk, nl=False)


@imports.command("failed")
@click.argument("import_id", type=click.UUID)
@click.option("--account", default=None, help="Account slug (default $BULKOPS_ACCOUNT or demo).")
def imports_failed(import_id: uuid.UUID, account: str | None) -> None:
    """Failed rows of import IMPORT_ID as CSV: row, line, column, reason and the original row."""
    store, account_id = _store_and_account(account)
    _echo_failed(store, account_id, import_id)


@main.command("failed")
@click.argument("change_set_id", type=click.UUID, metavar="ID")
@click.option("--account", default=None, help="Account slug (default $BULKOPS_ACCOUNT or demo).")
def failed_records(change_set_id: uuid.UUID, account: str | None) -> None:
    """Failed records, with reasons, of any import, bulk job, sync run or document import ID, as CSV."""
    store, account_id = _store_and_account(account)
    _echo_failed(store, account_id, change_set_id)


@main.command("stats")
@click.option("--account", default=None, help="Only this account (default: every account).")
@click.option("--since", default="7d", show_default=True, help="Window back from now: 30m, 12h, 7d, 2w.")
@click.option("--json", "as_json", is_flag=True, help="Print the numbers as JSON.")
def stats_command(account: str | None, since: str, as_json: bool) -> None:
    """Statistics of bulk operations: in progress, succeeded, failed, success rate, durations, records per day.

    The same numbers as the bulk_operations_stats asset and the API's stats-get.
    """
    from connectors.store import RecordStore
    from pipelines.monitoring import report

    store = RecordStore()
    account_id = store.account_id(account) if account else None
    try:
        result = report.stats_report(store, account_id=account_id, since=since)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--since") from None
    if as_json:
        click.echo(json.dumps(result.as_dict(), default=str, indent=2))
        return
    click.echo(report.text_table(result))


@main.group()
def outbox() -> None:
    """The outbox's send_email events: list them, send the due ones now, re-queue dead or unconfirmed ones."""


@outbox.command("list")
@click.option(
    "--status", "statuses", multiple=True, help="Only these statuses (pending, sending, delivered, dead, unconfirmed)."
)
@click.option("--limit", type=int, default=50, show_default=True, help="At most this many events.")
def outbox_list(statuses: tuple[str, ...], limit: int) -> None:
    """send_email events, newest first: id, status, attempts, last error."""
    from connectors.store import RecordStore, deliveries

    for row in deliveries.listing(RecordStore(), deliveries.OUTBOX_EMAILS, statuses=list(statuses), limit=limit):
        click.echo(f"{row['id']}  {row['status']:<11}  {row['attempts']}  {row['last_error'] or ''}".rstrip())


@outbox.command("drain")
@click.option("--limit", type=int, default=100, show_default=True, help="At most this many events.")
def outbox_drain(limit: int) -> None:
    """Send the due send_email events now, through $BULKOPS_SMTP_HOST (what outbox_email_sensor does)."""
    from connectors import mail, outbox
    from connectors.store import RecordStore

    smtp = mail.smtp_settings()
    if smtp is None:
        raise CommandFailed("BULKOPS_SMTP_HOST is not set: no SMTP server to send through")
    result = outbox.drain(RecordStore(), smtp, limit=limit)
    click.echo(json.dumps(result.as_dict()))
    for error in result.errors:
        warn(error)


@outbox.command("requeue")
@click.argument("event_ids", nargs=-1, required=True, type=click.UUID)
def outbox_requeue(event_ids: tuple[uuid.UUID, ...]) -> None:
    """Send dead or unconfirmed events EVENT_IDS again, from their first attempt (check the receiver first)."""
    from connectors.store import RecordStore, deliveries

    n = deliveries.requeue(RecordStore(), deliveries.OUTBOX_EMAILS, list(event_ids))
    click.echo(f"re-queued {n} of {len(event_ids)} (only dead or unconfirmed events are)")


@main.group()
def alerts() -> None:
    """Failed runs recorded by run_failure_alert_sensor, and their notifications."""


@alerts.command("list")
@click.option("--limit", type=int, default=20, show_default=True, help="At most this many alerts.")
def alerts_list(limit: int) -> None:
    """The newest failed runs: when, job, kind, account, status, first error, link; then each notification."""
    from connectors.store import RecordStore
    from connectors.store import alerts as store_alerts

    store = RecordStore()
    for alert in store_alerts.recent(store, limit=limit):
        click.echo(
            f"{alert['recorded_at']:%Y-%m-%d %H:%M:%S}  {alert['job_name']}  {alert['kind'] or '-'}  "
            f"{alert['account'] or '-'}  {alert['run_status']}  {alert['run_url'] or alert['run_id']}"
        )
        click.echo(f"    {alert['reason'] or ''}")
        for d in store_alerts.get(store, alert["run_id"])["deliveries"]:
            click.echo(
                f"    -> {d['channel']} {d['target']}: {d['status']} ({d['attempts']} attempts) {d['last_error'] or ''}".rstrip()
            )


def _documents() -> click.Group:
    from pipelines.documents.cli import documents

    return documents


main.add_command(_documents())
# -- syncs (docs/syncs.md)


def _connections() -> dict:
    from pipelines.syncs.assets import syncs_folder
    from pipelines.syncs.config import load_folder

    return {c.name: c for c in load_folder(syncs_folder(), check_env=False)}


def _connection(name: str):  # type: ignore[no-untyped-def]
    found = _connections()
    if name not in found:
        from pipelines.syncs.assets import syncs_folder

        known = ", ".join(sorted(found)) or "none"
        raise CommandFailed(f"no sync {name!r} in {syncs_folder()} (connections: {known})")
    return found[name]


SYNC_COLUMNS = (
    "started_at",
    "finished_at",
    "records_read",
    "created",
    "updated",
    "unchanged",
    "deleted",
    "conflicts",
    "errors",
    "status",
)


def _print_sync_runs(rows: list[dict], with_name: bool = False) -> None:
    headers = (
        *(("sync",) if with_name else ()),
        "started",
        "finished",
        "read",
        "created",
        "updated",
        "unchanged",
        "deleted",
        "conflicts",
        "errors",
        "status",
        "id",
    )
    table = []
    for row in rows:
        cells = [
            f"{row[c]:%Y-%m-%d %H:%M:%S}" if hasattr(row.get(c), "strftime") else str(row.get(c) or "--")
            for c in SYNC_COLUMNS
        ]
        table.append((*((row["sync_name"],) if with_name else ()), *cells, str(row["id"])))
    widths = [max(len(h), *(len(r[i]) for r in table)) if table else len(h) for i, h in enumerate(headers)]
    click.echo("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=False)).rstrip())
    for row, r in zip(rows, table, strict=False):
        click.echo("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)).rstrip())
        if row.get("error_message") and row.get("status") != "completed":
            click.echo(f"    {row['status']}: {_one_line(row['error_message'])}")


@main.group()
def syncs() -> None:
    """Scheduled syncs: connections, run history, runs on demand."""


@syncs.command("list")
def syncs_list() -> None:
    """The connections of the syncs folder, with their schedule and last run."""
    from connectors.store import RecordStore
    from pipelines.syncs.engine import latest_runs

    store = RecordStore()
    last: dict[str, dict] = {}
    for c in _connections().values():
        if c.account not in last:
            try:
                last[c.account] = latest_runs(store, store.account_id(c.account))
            except LookupError:
                last[c.account] = {}
        run = last[c.account].get(c.name)
        when = f"{run['started_at']:%Y-%m-%d %H:%M}" if run else "never"
        status = run["status"] if run else "--"
        source = c.shown_source()
        what = source.get("table") or source.get("resource") or source.get("path") or ""
        click.echo(
            f"{c.name}  {source['type']}:{what} -> {c.entity} ({c.account})  {c.direction}  {c.schedule or 'no schedule'}  last run {when} {status}"
        )


@syncs.command("history")
@click.argument("name", required=False)
@click.option(
    "--account", default=None, help="Account slug (default: the connection's, else $BULKOPS_ACCOUNT or demo)."
)
@click.option("--limit", type=int, default=50, show_default=True, help="At most this many runs.")
def syncs_history(name: str | None, account: str | None, limit: int) -> None:
    """Sync runs, newest first: started, finished, read, created, updated, unchanged, conflicts, errors, status."""
    from pipelines.syncs.engine import list_runs

    if name and account is None:
        account = _connection(name).account
    store, account_id = _store_and_account(account)
    _print_sync_runs(list_runs(store, account_id, name, limit), with_name=name is None)


@syncs.command("run")
@click.argument("name")
@click.option("--full-refresh", is_flag=True, help="Read every source row, not only what changed since the last run.")
def syncs_run(name: str, full_refresh: bool) -> None:
    """Run sync NAME now as a run of its Dagster job (sync_NAME), through the instance's run launcher
    (queued under the per-connection limit when a webserver serves the instance), and print its history row."""
    from pipelines import runs
    from pipelines.syncs.engine import list_runs

    connection = _connection(name)
    use_local_dagster_home()
    config = {"ops": {f"syncs__{name}": {"config": {"full_refresh": full_refresh}}}}
    tags = {"bulkops/kind": "sync", "bulkops/sync": name}
    run_id = runs.launch_run(f"sync_{name}", run_config=config, tags=tags)
    click.echo(f"run {run_id}: sync {name}")
    status = runs.wait_for_run(run_id)
    store, account_id = _store_and_account(connection.account)
    _print_sync_runs(list_runs(store, account_id, name, 1))
    if status.value != "SUCCESS":
        raise CommandFailed(f"sync {name} ended {status.value.lower()} (Dagster run {run_id})")


@syncs.command("rollback")
@click.argument("run_id", type=click.UUID)
@click.option("--account", default=None, help="Account slug (default $BULKOPS_ACCOUNT or demo).")
@click.option("--force", is_flag=True, help="Also undo records something else changed after the run.")
def syncs_rollback(run_id: uuid.UUID, account: str | None, force: bool) -> None:
    """Undo sync run RUN_ID: delete what it created, restore what it updated or deleted (audited)."""
    from pipelines.syncs.engine import rollback_sync

    store, account_id = _store_and_account(account)
    outcome = rollback_sync(store, account_id, run_id, actor=_cli_actor(), force=force)
    click.echo(f"sync run {run_id}: {outcome['status']}")
    for what in ("deleted", "restored", "kept", "conflicts"):
        counts = {k: v for k, v in outcome.get(what, {}).items() if v}
        click.echo(f"  {what}: " + (", ".join(f"{k} {v}" for k, v in counts.items()) or "none"))


@main.group()
def conflicts() -> None:
    """Sync conflicts a manual-strategy connection left for someone to decide."""


@conflicts.command("list")
@click.option("--sync", "name", default=None, help="Only this connection's conflicts.")
@click.option("--account", default=None, help="Account slug (default $BULKOPS_ACCOUNT or demo).")
@click.option("--all", "show_all", is_flag=True, help="Resolved ones too.")
def conflicts_list(name: str | None, account: str | None, show_all: bool) -> None:
    """Open conflicts: id, sync, entity, key, when, resolution."""
    from pipelines.syncs.engine import list_conflicts

    if name and account is None:
        account = _connection(name).account
    store, account_id = _store_and_account(account)
    for c in list_conflicts(store, account_id, name, open_only=not show_all):
        click.echo(
            f"{c['id']}  {c['sync_name']}  {c['entity_type']}  {c['key']}  {c['created_at']:%Y-%m-%d %H:%M}  {c['resolution'] or 'open'}"
        )


@conflicts.command("show")
@click.argument("conflict_id", type=click.UUID)
@click.option("--account", default=None, help="Account slug (default $BULKOPS_ACCOUNT or demo).")
def conflicts_show(conflict_id: uuid.UUID, account: str | None) -> None:
    """Both sides of conflict CONFLICT_ID, field by field."""
    from pipelines.syncs.engine import get_conflict

    store, account_id = _store_and_account(account)
    c = get_conflict(store, account_id, conflict_id)
    if c is None:
        raise CommandFailed(f"no conflict {conflict_id} in this account (bulkops conflicts list shows them)")
    click.echo(
        f"conflict {c['id']}: sync {c['sync_name']}, {c['entity_type']} {c['entity_id']} (key {c['key']}), {c['resolution'] or 'open'}"
    )
    click.echo("source: " + json.dumps(c["source_values"], default=str, sort_keys=True))
    click.echo("target: " + json.dumps(c["target_values"], default=str, sort_keys=True))


@conflicts.command("resolve")
@click.argument("conflict_id", type=click.UUID)
@click.option(
    "--take",
    type=click.Choice(["source", "target", "value"]),
    required=True,
    help="Whose values the record keeps: the source's, the record's as it is, or --set values.",
)
@click.option(
    "--set",
    "values",
    multiple=True,
    metavar="FIELD=VALUE",
    help="With --take value: a record field and the value to write (repeatable).",
)
@click.option("--account", default=None, help="Account slug (default $BULKOPS_ACCOUNT or demo).")
def conflicts_resolve(conflict_id: uuid.UUID, take: str, values: tuple[str, ...], account: str | None) -> None:
    """Resolve conflict CONFLICT_ID as a sync run of its own (audited, rollback-able); the record is then
    in step with the source, so the conflict does not come back on the next run."""
    from pipelines.syncs.engine import get_conflict, resolve_conflict

    store, account_id = _store_and_account(account)
    found = get_conflict(store, account_id, conflict_id)
    if found is None:
        raise CommandFailed(f"no conflict {conflict_id} in this account (bulkops conflicts list shows them)")
    pairs = {}
    for item in values:
        field_name, sep, value = item.partition("=")
        if not sep:
            raise CommandFailed(f"--set {item!r}: write FIELD=VALUE")
        pairs[field_name.strip()] = value
    out = resolve_conflict(
        store, _connection(found["sync_name"]), conflict_id, take=take, values=pairs, actor=_cli_actor()
    )
    run = f" (sync run {out['sync_run_id']})" if out["sync_run_id"] else ""
    click.echo(f"conflict {conflict_id}: resolved, took {take}{run}")


def run() -> None:
    """Console entry point (`bulkops`): errors print as one line, see `BulkopsGroup`."""
    main()


if __name__ == "__main__":
    run()
