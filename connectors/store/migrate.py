"""Alembic migrations driven from code: no alembic.ini, the script directory ships in the package."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# The newest revision in migrations/versions, known without loading Alembic: every store open
# checks the schema, and Alembic with its script directory costs a run worker ~0.4 s to import.
# tests/store/test_migrations.py checks that it is Alembic's head; a new migration updates it.
HEAD = "0013"


class SchemaOutOfDate(RuntimeError):
    """The database schema is not at the revision this code expects."""


def alembic_config(engine: sa.Engine) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False).replace("%", "%%"))
    return cfg


def head_revision() -> str:
    """The head revision by Alembic's reading of the migration scripts."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()


def current_revision(engine: sa.Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: sa.Engine, revision: str = "head") -> None:
    from alembic import command

    cfg = alembic_config(engine)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def downgrade(engine: sa.Engine, revision: str) -> None:
    from alembic import command

    cfg = alembic_config(engine)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, revision)


def check_schema(engine: sa.Engine) -> None:
    """Raise `SchemaOutOfDate` naming the command to run unless the database is at head."""
    if _stamped(engine) == HEAD:
        return
    current, head = current_revision(engine), head_revision()
    if current != head:
        where = "has no schema yet" if current is None else f"is at revision {current}"
        raise SchemaOutOfDate(
            f"the record store at {engine.url.render_as_string(hide_password=True)} {where}, "
            f"this code expects {head}: run `bulkops db upgrade`"
        )


def _stamped(engine: sa.Engine) -> str | None:
    """The revision in the version table, read with one SELECT (None: no table, or not one row)."""
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT version_num FROM alembic_version")).all()
    except sa.exc.DBAPIError:
        return None
    return rows[0][0] if len(rows) == 1 else None
