"""Per-account settings (`accounts.settings`), first the value sets of status and stage fields.

An account's value set for `<entity>.<field>` replaces the registry's default set
(`registry.value_set`); resetting it brings the default back.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import sqlalchemy as sa

from connectors.store import registry, schema
from connectors.store.store import AccountNotFound, RecordStore

accounts_t = schema.accounts


class ValueSetError(ValueError):
    """A value-set key or values that cannot be used; the message says what to do."""


class ValueSet(NamedTuple):
    key: str
    values: tuple[str, ...]
    # "account" when the account set its own values, else "default"
    source: str


def settings(conn: sa.Connection, account_id: uuid.UUID) -> dict[str, Any]:
    """The account's settings object ({} when it has none)."""
    value = conn.scalar(sa.select(accounts_t.c.settings).where(accounts_t.c.id == account_id))
    return dict(value or {})


def slug(conn: sa.Connection, account_id: uuid.UUID) -> str:
    """The account's slug; AccountNotFound when there is no such account."""
    value = conn.scalar(sa.select(accounts_t.c.slug).where(accounts_t.c.id == account_id))
    if value is None:
        raise AccountNotFound(f"no account {account_id}")
    return value


def value_set_keys() -> list[str]:
    """Every `<entity>.<field>` with a declared value set, in registry order."""
    return [f"{e.name}.{f}" for e in registry.ENTITIES.values() for f in e.value_sets]


def parse_key(key: str) -> tuple[str, str]:
    """`applications.stage` (or `contacts.status`...) as (canonical entity, field).

    Raises:
        ValueSetError: not `ENTITY.FIELD`, or the field has no declared value set.
    """
    entity, dot, field = key.partition(".")
    if not dot or not entity or not field:
        raise ValueSetError(f"{key!r} is not ENTITY.FIELD: use one of {', '.join(value_set_keys())}")
    try:
        entity = registry.canonical(entity)
    except registry.UnknownEntity as exc:
        raise ValueSetError(str(exc)) from None
    if field not in registry.get(entity).value_sets:
        raise ValueSetError(f"{entity}.{field} has no value set: use one of {', '.join(value_set_keys())}")
    return entity, field


def value_sets(conn: sa.Connection, account_id: uuid.UUID, keys: Iterable[str] | None = None) -> list[ValueSet]:
    """The value sets in force for the account (its own, else the defaults)."""
    custom = settings(conn, account_id).get("value_sets") or {}
    out = []
    for key in keys if keys is not None else value_set_keys():
        entity, field = parse_key(key)
        canonical_key = f"{entity}.{field}"
        values = registry.value_set(entity, field, {"value_sets": custom})
        out.append(ValueSet(canonical_key, values or (), "account" if custom.get(canonical_key) else "default"))
    return out


def clean_values(key: str, values: Sequence[str]) -> tuple[str, ...]:
    """The values of a new set, stripped and de-duplicated (case-insensitively), in order.

    Raises:
        ValueSetError: no values, an empty value, or one longer than the field's column.
    """
    entity, field = parse_key(key)
    length = getattr(registry.get(entity).table.c[field].type, "length", None)
    out: dict[str, str] = {}
    for value in values:
        value = str(value).strip()
        if not value:
            raise ValueSetError(f"{entity}.{field}: empty values are not allowed")
        if length and len(value) > length:
            raise ValueSetError(f"{entity}.{field}: {value!r} is longer than {length} characters")
        out.setdefault(value.casefold(), value)
    if not out:
        raise ValueSetError(f"{entity}.{field}: give at least one value (reset brings the defaults back)")
    return tuple(out.values())


def set_value_set(store: RecordStore, account_id: uuid.UUID, key: str, values: Sequence[str]) -> ValueSet:
    """Replace the account's value set for `key`; returns the set now in force."""
    entity, field = parse_key(key)
    clean = clean_values(key, values)
    return _update(store, account_id, f"{entity}.{field}", list(clean))


def reset_value_set(store: RecordStore, account_id: uuid.UUID, key: str) -> ValueSet:
    """Drop the account's own set for `key`: the default is in force again."""
    entity, field = parse_key(key)
    return _update(store, account_id, f"{entity}.{field}", None)


def _update(store: RecordStore, account_id: uuid.UUID, key: str, values: list[str] | None) -> ValueSet:
    with store.begin() as conn:
        stmt = sa.select(accounts_t.c.settings).where(accounts_t.c.id == account_id)
        if conn.dialect.name == "postgresql":
            stmt = stmt.with_for_update()
        row = conn.execute(stmt).one_or_none()
        if row is None:
            raise AccountNotFound(f"no account {account_id}")
        current: dict[str, Any] = dict(row.settings or {})
        sets: dict[str, Any] = dict(current.get("value_sets") or {})
        if values is None:
            sets.pop(key, None)
        else:
            sets[key] = values
        current["value_sets"] = sets
        conn.execute(accounts_t.update().where(accounts_t.c.id == account_id).values(settings=current))
        return value_sets(conn, account_id, [key])[0]


def canonical_value(entity: str, field: str, value: str, account_settings: Mapping[str, Any] | None) -> str | None:
    """`value` spelled as in the field's value set (matched ignoring case and surrounding
    spaces), the value itself when the field has no set, or None when the set lacks it."""
    allowed = registry.value_set(entity, field, account_settings)
    if allowed is None:
        return value
    folded = value.strip().casefold()
    return next((v for v in allowed if v.casefold() == folded), None)


def slug_of(conn: sa.Connection, account_id: uuid.UUID) -> str | None:
    """The slug of ACCOUNT_ID (None when there is no such account)."""
    return conn.scalar(sa.select(schema.accounts.c.slug).where(schema.accounts.c.id == account_id))
