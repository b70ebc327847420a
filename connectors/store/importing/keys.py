"""Match keys: job codes, external ids and the application external ids of contracts.

They ignore case (and the surrounding whitespace validation strips) unless case-sensitive:
lookups compare lower(stored) with lower(staged), served by the (account_id, lower(key))
indexes of migration 0008. A record keeps the spelling it was created with.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from connectors.store.dialect import StoreDialect


@dataclass(frozen=True)
class Keys:
    dialect: StoreDialect
    case_sensitive: bool = False

    def of(self, key: sa.ColumnElement) -> sa.ColumnElement:
        """SQL: the value match keys compare (and group) by."""
        return key if self.case_sensitive else self.dialect.fold(key)

    def equal(self, stored: sa.ColumnElement, staged: sa.ColumnElement) -> sa.ColumnElement:
        """SQL: a stored key equals a staged one; the folded stored key is what the key indexes hold."""
        folded = self.dialect.fold(stored) == self.dialect.fold(staged)
        return sa.and_(folded, stored == staged) if self.case_sensitive else folded

    def kept(self, stored: sa.ColumnElement, staged: sa.ColumnElement) -> sa.ColumnElement:
        """SQL: the key an update writes: the record keeps its spelling of an equal key."""
        if self.case_sensitive:
            return staged
        return sa.case((self.dialect.fold(stored) == self.dialect.fold(staged), stored), else_=staged)
