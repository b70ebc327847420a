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

    database_url: str = Field(
        default_factory=settings.database_url,
        description="SQLAlchemy URL of the record store; defaults to $BULKOPS_DATABASE_URL or var/bulkops.db.",
    )

    @cached_property
    def store(self) -> RecordStore:
        try:
            return RecordStore(self.database_url)
        except SchemaOutOfDate as exc:
            # a migration is a human decision: fail the step once, no retries
            raise dg.Failure(description=str(exc), allow_retries=False) from exc

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if "store" in self.__dict__:
            self.store.dispose()
