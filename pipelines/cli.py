"""The `bulkops` command line: database, accounts, imports, the demo, the API server."""

from __future__ import annotations

import os
import sys

import click

from connectors import settings


def _use_local_dagster_home() -> None:
    # runs launched by the CLI land in the same instance `dagster dev` shows
    home = settings.dagster_home()
    home.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("DAGSTER_HOME", str(home))
    config = home / "dagster.yaml"
    if not config.exists():
        from importlib.resources import files

        config.write_text(files("pipelines").joinpath("dagster.local.yaml").read_text())


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


def run() -> None:
    """Console entry point: known user errors print one line, not a traceback."""
    from connectors.store import AccountNotFound, SchemaOutOfDate

    try:
        main(standalone_mode=True)
    except (SchemaOutOfDate, AccountNotFound) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
