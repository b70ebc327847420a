"""The filter language: which records of an account an export or a bulk job by filter takes.

A filter is a list of conditions, all of which must hold, plus whether soft-deleted records are
included. A condition is written as text (`--where` on the command line, `where:` in a preset or
the Launchpad) or as a typed structure (`{"field": ..., "op": ..., "value": ...}`, the API):

    stage=review                 equality (`stage=` alone: the field is empty)
    stage!=rejected              inequality (`source!=` alone: the field is set)
    applied_at>=2026-01-01       ranges on any timestamp (or number): > >= < <=; a date alone is
    applied_at<=2026-01-31       that whole day (`<=2026-01-31` takes in the 31st)
    stage in review,interview    one of a comma-separated list (`not in` for none of them)
    source~linked                text contains, ignoring case
    tags=vip  tags in vip,urgent the record carries the tag (any of the tags)
    job=ENG-1                    shorthands: job = job_code, candidate = candidate_email

Fields are the entity's export fields (`fields.catalog`): its columns, the related fields its
foreign keys lend it (`candidate_email`, `job_title`, ...) and `tags`. An unknown field or
operator, or a value of the wrong type, raises `FilterError` with one line naming it.

`compile_filter` turns a filter into SQLAlchemy Core conditions with bound parameters. The
account is not a condition one can write: `account_conditions` always adds it, and a condition
on `account_id` is refused. Bulk jobs by filter (`connectors/store/bulk/selection.py`) reuse it as it is.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from connectors.store import schema
from connectors.store.export import fields as F

OPERATORS = ("=", "!=", ">", ">=", "<", "<=", "~", "in", "not in")
_WORDS = {
    "=": "is",
    "!=": "is not",
    ">": "after",
    ">=": "on or after",
    "<": "before",
    "<=": "on or before",
    "~": "contains",
    "in": "is one of",
    "not in": "is none of",
}
_LIST_RE = re.compile(r"^\s*([A-Za-z_][\w.]*)\s+(not\s+in|in)\s+(.*)$", re.IGNORECASE)
_OP_RE = re.compile(r"^\s*([A-Za-z_][\w.]*)\s*(>=|<=|!=|=|>|<|~)(.*)$", re.DOTALL)
_DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_TRUE, _FALSE = ("true", "1", "yes", "y", "t"), ("false", "0", "no", "n", "f")


class FilterError(ValueError):
    """A filter that cannot run: the message is one line naming the field, operator or value."""


@dataclass(frozen=True)
class Condition:
    field: str
    op: str
    # a string, or a list of strings for `in` / `not in`
    value: Any

    def words(self) -> str:
        value = self.value
        if self.op in ("in", "not in"):
            shown = ", ".join(str(v) for v in value)
        elif value in ("", None) and self.op in ("=", "!="):
            return f"{self.field} is {'empty' if self.op == '=' else 'set'}"
        else:
            shown = str(value)
        if self.field in ("tags", "tag") and self.op in ("=", "in"):
            return f"tagged {shown}" if self.op == "=" else f"tagged any of {shown}"
        return f"{self.field} {_WORDS[self.op]} {shown}"


@dataclass(frozen=True)
class Filter:
    conditions: tuple[Condition, ...] = ()
    include_deleted: bool = False
    extra: Mapping[str, Any] = field(default_factory=dict)

    def words(self, entity: str) -> str:
        """The filter in words: 'applications where stage is review and applied_at on or after 2026-01-01'."""
        text = entity
        if self.conditions:
            text += " where " + " and ".join(c.words() for c in self.conditions)
        return text + (", deleted records included" if self.include_deleted else "")


def parse_condition(text: str) -> Condition:
    """`stage=review`, `applied_at>=2026-01-01`, `source~linked`, `stage in a,b` -> Condition."""
    m = _LIST_RE.match(text)
    if m:
        op = " ".join(m.group(2).lower().split())
        values = [v.strip() for v in m.group(3).split(",") if v.strip()]
        if not values:
            raise FilterError(f"filter {text!r}: `{op}` needs a comma-separated list of values")
        return Condition(m.group(1), op, values)
    m = _OP_RE.match(text)
    if not m:
        raise FilterError(
            f"filter {text!r} is not FIELD OP VALUE: operators are {', '.join(OPERATORS)} "
            "(e.g. stage=review, applied_at>=2026-01-01, source~linked, stage in review,interview)"
        )
    return Condition(m.group(1), m.group(2), m.group(3).strip())


def condition_from(obj: Any) -> Condition:
    """A condition from its typed structure `{"field", "op", "value"}` (op defaults to `=`) or its text."""
    if isinstance(obj, str):
        return parse_condition(obj)
    if isinstance(obj, Condition):
        return obj
    if not isinstance(obj, Mapping) or "field" not in obj:
        raise FilterError(f"filter {obj!r:.80}: expected a text like stage=review or {{field, op, value}}")
    unknown = set(obj) - {"field", "op", "value"}
    if unknown:
        raise FilterError(f"filter {obj!r:.80}: unknown key(s) {', '.join(sorted(unknown))}")
    op = str(obj.get("op") or "=").lower()
    value = obj.get("value")
    if op in ("in", "not in"):
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list | tuple) or not value:
            raise FilterError(f"filter on {obj['field']!r}: `{op}` needs a non-empty list of values")
        value = [str(v) for v in value]
    elif value is None:
        value = ""
    elif isinstance(value, bool):
        value = "true" if value else "false"
    else:
        value = str(value)
    return Condition(str(obj["field"]), op, value)


def make_filter(conditions: Iterable[Any] = (), *, include_deleted: bool = False) -> Filter:
    """A Filter from texts and/or typed structures (see `condition_from`)."""
    return Filter(tuple(condition_from(c) for c in conditions), include_deleted)


def _parse_datetime(text: str, name: str) -> tuple[datetime, bool]:
    """(moment in UTC, whether TEXT was a date alone)."""
    try:
        if _DATE_ONLY.match(text):
            d = date.fromisoformat(text)
            return datetime(d.year, d.month, d.day, tzinfo=UTC), True
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise FilterError(f"filter on {name!r}: {text!r} is not a date (YYYY-MM-DD) or ISO 8601 timestamp") from None
    return (moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)), False


def _value(f: F.Field, text: str) -> Any:
    try:
        if f.kind == F.UUID:
            return uuid.UUID(text)
        if f.kind == F.INT:
            return int(text)
        if f.kind == F.FLOAT:
            return float(text)
        if f.kind == F.BOOL:
            if text.lower() in _TRUE:
                return True
            if text.lower() in _FALSE:
                return False
            raise ValueError
    except ValueError:
        raise FilterError(f"filter on {f.name!r}: {text!r} is not a {f.kind} value") from None
    if f.kind == F.DATETIME:
        return _parse_datetime(text, f.name)[0]
    return text


def _tag_condition(cat: F.Catalog, c: Condition) -> sa.ColumnElement[bool]:
    t, base = schema.tags, cat.table
    owned = [t.c.account_id == base.c.account_id, t.c.entity_type == cat.entity, t.c.entity_id == base.c.id]
    if c.op in ("=", "!=") and c.value == "":
        has_any = sa.exists().where(*owned)
        return ~has_any if c.op == "=" else has_any
    if c.op in ("=", "!="):
        test = t.c.tag == c.value
    elif c.op in ("in", "not in"):
        test = t.c.tag.in_(list(c.value))
    elif c.op == "~":
        test = t.c.tag.icontains(c.value, autoescape=True)
    else:
        raise FilterError(f"filter on 'tags': operator {c.op!r} does not apply to tags (use =, !=, in, not in, ~)")
    found = sa.exists().where(*owned, test)
    return ~found if c.op in ("!=", "not in") else found


def _condition(cat: F.Catalog, c: Condition) -> tuple[sa.ColumnElement[bool], F.Field]:
    if c.op not in OPERATORS:
        raise FilterError(f"filter on {c.field!r}: unknown operator {c.op!r}: use one of {', '.join(OPERATORS)}")
    try:
        f = cat.resolve(c.field)
    except F.UnknownField as exc:
        raise FilterError(str(exc)) from None
    if f.tags:
        return _tag_condition(cat, c), f
    if f.kind == F.JSON:
        raise FilterError(f"filter on {f.name!r}: a JSON field cannot be filtered on")
    col = f.expr
    if c.op in ("in", "not in"):
        values = [_value(f, v) for v in c.value]
        return (col.in_(values) if c.op == "in" else sa.or_(col.is_(None), col.not_in(values))), f
    if c.op in ("=", "!=") and c.value == "":
        return (col.is_(None) if c.op == "=" else col.is_not(None)), f
    if c.op == "~":
        if f.kind != F.TEXT:
            raise FilterError(f"filter on {f.name!r}: `~` (contains) applies to text fields, not {f.kind}")
        return col.icontains(c.value, autoescape=True), f
    if c.op in (">", ">=", "<", "<=") and f.kind in (F.TEXT, F.BOOL, F.UUID):
        raise FilterError(f"filter on {f.name!r}: {c.op} applies to timestamps and numbers, not {f.kind}")
    if f.kind == F.DATETIME:
        moment, whole_day = _parse_datetime(c.value, f.name)
        if whole_day and c.op in ("<=", ">"):
            # a date alone is the whole day: `<= 2026-01-31` takes in the 31st, `> 2026-01-31` starts on the 1st
            moment += timedelta(days=1)
            return (col < moment if c.op == "<=" else col >= moment), f
        if whole_day and c.op in ("=", "!="):
            day = sa.and_(col >= moment, col < moment + timedelta(days=1))
            return (day if c.op == "=" else sa.or_(col.is_(None), ~day)), f
        value: Any = moment
    else:
        value = _value(f, c.value)
    ops = {
        "=": col.__eq__,
        "!=": lambda v: sa.or_(col.is_(None), col != v),
        ">": col.__gt__,
        ">=": col.__ge__,
        "<": col.__lt__,
        "<=": col.__le__,
    }
    return ops[c.op](value), f


def compile_filter(cat: F.Catalog, flt: Filter) -> tuple[list[sa.ColumnElement[bool]], list[F.Join]]:
    """The WHERE conditions of FLT on CAT's base table (account not included) and the joins they need.

    Raises:
        FilterError: an unknown field or operator, or a value of the wrong type (one line).
    """
    where: list[sa.ColumnElement[bool]] = []
    joins: list[F.Join] = []
    for c in flt.conditions:
        clause, f = _condition(cat, c)
        where.append(clause)
        if f.join is not None and f.join not in joins:
            joins.append(f.join)
    if not flt.include_deleted and "deleted_at" in cat.table.c:
        where.append(cat.table.c.deleted_at.is_(None))
    rows = F.ENTITY_ROWS.get(cat.entity)
    if rows is not None:
        where.append(rows(cat.table))
    return where, joins


def account_conditions(cat: F.Catalog, account_id: uuid.UUID) -> list[sa.ColumnElement]:
    """Tenancy: the base table's rows of the account (a query joins related rows within it, in their ON)."""
    return [cat.table.c.account_id == account_id]
