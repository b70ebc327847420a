"""The record store as a Dagster resource."""

from __future__ import annotations

from functools import cached_property
from typing import Any

import dagster as dg
import sqlalchemy as sa
from pydantic import Field

from connectors import settings
from connectors.store import RecordStore, SchemaOutOfDate


class RecordStoreResource(dg.ConfigurableResource):
    """The bulkops record store (SQLite by default, PostgreSQL in production).

    Runs fail before touching data when the schema is behind, naming `bulkops db upgrade`.
    """

    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the record store. Empty: $BULKOPS_DATABASE_URL, else var/bulkops.db, "
        "read when a run starts.",
    )

    expect_database: str | None = Field(
        default=None,
        description="Set by bulkops when it launches a run whose record-store URL holds a password: that URL "
        "with the password hidden. The run reads the URL from $BULKOPS_DATABASE_URL and fails if it names "
        "another database.",
    )

    @property
    def url(self) -> str:
        """The URL the store opens: the configured one, else the settings' at the time of asking."""
        return self.database_url or settings.database_url()

    @cached_property
    def store(self) -> RecordStore:
        if self.expect_database is not None and shown_url(self.url) != self.expect_database:
            raise dg.Failure(
                description=f"this run was launched for the record store {self.expect_database}, but "
                f"{settings.DATABASE_URL_ENV} here names {shown_url(self.url)}: start Dagster (dagster dev, its "
                "daemon and code servers) with the same BULKOPS_DATABASE_URL as the command or API that "
                "launches runs",
                allow_retries=False,
            )
        try:
            return RecordStore(self.url)
        except SchemaOutOfDate as exc:
            # a migration is a human decision: fail the step once, no retries
            raise dg.Failure(description=str(exc), allow_retries=False) from exc

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if "store" in self.__dict__:
            self.store.dispose()


def shown_url(url: str) -> str:
    """URL as it may be shown: its password, if any, as ***."""
    try:
        return sa.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return "<not a database URL>"


def store_run_config(database_url: str | None) -> dict[str, Any]:
    """The `record_store` resource's run config for a run launched on DATABASE_URL ({} for none).

    Run config is kept in Dagster's run storage and shown in the UI, so a URL with a password is
    never written there: the run worker reads `$BULKOPS_DATABASE_URL` from its own environment
    (Dagster's `{"env": ...}`), and `expect_database` (the URL with the password hidden) makes the
    run fail, saying so, when that names another database.
    """
    if not database_url:
        return {}
    try:
        password = sa.make_url(database_url).password
    except sa.exc.ArgumentError:
        password = None
    if not password:
        config: dict[str, Any] = {"database_url": database_url}
    else:
        config = {"database_url": {"env": settings.DATABASE_URL_ENV}, "expect_database": shown_url(database_url)}
    return {"record_store": {"config": config}}
