"""Planner statistics of the tables an import looks records up in, kept describing the account.

Statistics that miss the account (a new tenant in a table another account filled) make the
planner believe it has no rows, and then any index starting with account_id looks as good as
the right one: a lookup walked all the account's rows per probe, minutes per batch. Autovacuum
would refresh them when it runs and catches up; an import cannot count on it.
"""

from __future__ import annotations

import sqlalchemy as sa

from connectors.store.dialect import StoreDialect
from connectors.store.importing.staging import ACCT
from connectors.store.schema import metadata

# the record tables each entity's import looks records up in (and grows)
LOOKUP_TABLES = {
    "applications": ("applications", "users", "jobs"),
    "candidates": ("users",),
    "jobs": ("jobs",),
    "contracts": ("contracts", "applications"),
}
# re-analyze a lookup table once the rows an import added reach this share of the account's rows
# it held at the last ANALYZE (so: each time the import doubles the account there), and at least
ANALYZE_GROWTH = 1.0
ANALYZE_MIN_ROWS = 10_000


class LookupStatistics:
    """When to ANALYZE the lookup tables of one import (databases that keep planner statistics)."""

    def __init__(self, dialect: StoreDialect, entity: str) -> None:
        self.dialect = dialect
        self.tables = LOOKUP_TABLES[entity]
        # lookup table -> [account's rows at the last ANALYZE (-1: never analyzed), rows added since]
        self.growth: dict[str, list[float]] | None = None

    def refresh(self, conn: sa.Connection, params: dict) -> list[str]:
        """ANALYZE the lookup tables whose statistics no longer describe this account's rows.

        Call between batches, in a transaction of its own (ANALYZE holds a lock until commit). A
        table gets one when it was never analyzed, when the account had no rows there before
        this import added some, and when this import has doubled the account's rows since the
        last one (at least ANALYZE_MIN_ROWS). Returns the tables analyzed.
        """
        if not self.dialect.keeps_planner_statistics:
            return []
        if self.growth is None:
            self.growth = {}
            for name in self.tables:
                table = metadata.tables[name]
                analyzed = self.dialect.has_statistics(conn, name)
                mine = conn.execute(
                    sa.select(sa.func.count()).select_from(table).where(table.c.account_id == ACCT), params
                ).scalar()
                self.growth[name] = [float(mine) if analyzed else -1.0, 0.0]
        done = []
        for name, (size, added) in self.growth.items():
            if size < 0 or (size == 0 and added > 0) or added >= max(ANALYZE_MIN_ROWS, ANALYZE_GROWTH * size):
                self.dialect.analyze(conn, name)
                self.growth[name] = [max(size, 0.0) + added, 0.0]
                done.append(name)
        return done

    def analyze_new_account(self, conn: sa.Connection) -> None:
        """Mid-batch ANALYZE of the tables where the account had no rows before this import.

        The later rounds of the first batch look up rows its first round wrote; statistics
        without the account would send each of those lookups through all of them.
        """
        for name, growth in (self.growth or {}).items():
            if growth[0] == 0:
                self.dialect.analyze(conn, name)
                growth[0] = 1.0  # known now: the doubling rule takes over

    def grew(self, table: str, rows: int) -> None:
        if self.growth is not None and table in self.growth:
            self.growth[table][1] += rows
