"""The record store as a Dagster resource."""

from __future__ import annotations

from functools import cached_property

import dagster as dg
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

    @property
    def url(self) -> str:
        """The URL the store opens: the configured one, else the settings' at the time of asking."""
        return self.database_url or settings.database_url()

    @cached_property
    def store(self) -> RecordStore:
        try:
            return RecordStore(self.url)
        except SchemaOutOfDate as exc:
            # a migration is a human decision: fail the step once, no retries
            raise dg.Failure(description=str(exc), allow_retries=False) from exc

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if "store" in self.__dict__:
            self.store.dispose()
