"""What an export can select and filter on, per registry entity: its table's columns and related fields.

Nothing here names an entity: the fields of an entity are its table's columns (less `account_id`),
the display fields of the records its foreign keys point at (`candidate_email`, `job_code`,
`application_external_id`, ...) and its tags. A new entity in the registry is
exportable with no code of its own.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from connectors.files.conventions import TAGS_DELIMITER
from connectors.store import registry, schema

# kinds: how a value is filtered, written to a text cell and typed in Parquet
TEXT, DATETIME, INT, FLOAT, BOOL, UUID, JSON = "text", "datetime", "int", "float", "bool", "uuid", "json"
# a record's tags: one text in CSV and Excel ("urgent, vip"), a list of texts in Parquet
TAGS = "tags"

# the fields a related record lends the records pointing at it, by its table
RELATED_FIELDS: Mapping[str, tuple[str, ...]] = {
    "users": ("email", "first_name", "last_name", "external_id"),
    "jobs": ("code", "title", "location", "status"),
    "applications": ("external_id", "stage", "status"),
}
# rows of a shared table that are not the entity's records (the users table holds recruiters too)
ENTITY_ROWS: Mapping[str, Callable[[sa.FromClause], sa.ColumnElement[bool]]] = {
    "candidates": lambda t: t.c.role == "candidate",
}
# shorthands people type: `job=ENG-1` is the job's code
ALIASES: Mapping[str, str] = {"job": "job_code", "candidate": "candidate_email", "tag": "tags"}
# a field everyone filters on but nobody wants in a default column list
HIDDEN_BY_DEFAULT = frozenset({"data", "answers", "terms", "import_id", "bulk_job_id"})


def kind_of(column: sa.ColumnElement) -> str:
    t = column.type
    if isinstance(t, sa.Uuid):
        return UUID
    if isinstance(t, sa.DateTime):
        return DATETIME
    if isinstance(t, sa.Boolean):
        return BOOL
    if isinstance(t, sa.Integer):
        return INT
    if isinstance(t, sa.Float):
        return FLOAT
    if isinstance(t, sa.JSON | schema.UuidList):
        return JSON
    return TEXT


@dataclass(frozen=True)
class Join:
    """A related table joined in (outer, within the same account) when one of its fields is used."""

    alias: sa.FromClause
    column: str  # the foreign-key column of the base table


@dataclass(frozen=True)
class Field:
    name: str
    kind: str
    expr: sa.ColumnElement
    join: Join | None = None
    # tags: the record's tags (kind TAGS); filters test membership
    tags: bool = False


@dataclass(frozen=True)
class Catalog:
    entity: str
    table: sa.Table
    fields: Mapping[str, Field]
    defaults: tuple[str, ...]

    def resolve(self, name: str) -> Field:
        """The field NAME (or its shorthand); an unknown name raises UnknownField naming the choices."""
        field = self.fields.get(name) or self.fields.get(ALIASES.get(name, ""))
        if field is None:
            raise UnknownField(self.entity, name, tuple(self.fields))
        return field


class UnknownField(ValueError):
    def __init__(self, entity: str, name: str, choices: tuple[str, ...]) -> None:
        hint = ""
        if name == "account_id":
            hint = " (the export's account is chosen by the account setting, never by a filter or column)"
        super().__init__(f"unknown field {name!r} for {entity}{hint}: choose one of {', '.join(choices)}")
        self.name = name


def _tags(entity: str, table: sa.Table, dialect: str) -> sa.ColumnElement:
    """The record's tags, sorted, joined by TAGS_DELIMITER (NULL when untagged): the writers make a text or a list."""
    t = schema.tags
    owned = sa.and_(t.c.account_id == table.c.account_id, t.c.entity_type == entity, t.c.entity_id == table.c.id)
    if dialect == "postgresql":
        agg = sa.func.string_agg(t.c.tag, postgresql.aggregate_order_by(sa.literal(TAGS_DELIMITER), t.c.tag))
        return sa.select(agg).where(owned).scalar_subquery()
    # the lookup walks the tags primary key (account, entity type, entity, tag): in tag order
    return sa.select(sa.func.group_concat(t.c.tag, TAGS_DELIMITER)).where(owned).scalar_subquery()


@cache
def catalog(entity_name: str, dialect: str) -> Catalog:
    """The exportable fields of ENTITY_NAME (a registry entity or alias) on DIALECT ('postgresql', 'sqlite')."""
    entity = registry.get(entity_name)
    table = entity.table
    fields: dict[str, Field] = {}
    for column in table.c:
        if column.name == "account_id":
            continue
        fields[column.name] = Field(column.name, kind_of(column), column)
    for column in table.c:
        targets = [fk.column.table for fk in column.foreign_keys]
        if not targets or column.name == "account_id" or targets[0].name not in RELATED_FIELDS:
            continue
        target = targets[0]
        prefix = column.name.removesuffix("_id")
        alias = target.alias(f"{prefix}_rel")
        join = Join(alias, column.name)
        for name in RELATED_FIELDS[target.name]:
            fields.setdefault(f"{prefix}_{name}", Field(f"{prefix}_{name}", TEXT, alias.c[name], join))
        if target.name == "users":
            full = sa.func.trim(
                sa.func.coalesce(alias.c.first_name, "") + " " + sa.func.coalesce(alias.c.last_name, "")
            )
            fields.setdefault(f"{prefix}_name", Field(f"{prefix}_name", TEXT, sa.func.nullif(full, ""), join))
    fields["tags"] = Field("tags", TAGS, _tags(entity.name, table, dialect), tags=True)
    defaults = tuple(n for n in fields if n not in HIDDEN_BY_DEFAULT and n != "email_normalized")
    return Catalog(entity.name, table, fields, defaults)
