"""The entity registry: one declaration per entity that everything else reads.

An entity is what users import, operate on, export and sync: its table, the fields a file can
fill (type and length from the schema), the required fields, header synonyms for automatic
mapping, duplicate match keys, the bulk operations it supports, the fields a `field_update`
may touch, the declared value sets of its status/stage fields, the tables whose rows block
a hard delete (derived from the schema's foreign keys), and how a rollback retracts the records a
change set created (deleted, or soft-deleted).

Adding an entity is one `Entity(...)` entry here plus a migration for its table.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import sqlalchemy as sa

from connectors.store import schema

TEXT, DATETIME = "text", "datetime"
ROLLBACK_CREATED = ("delete", "soft_delete")


class FieldSpec(NamedTuple):
    """A field a file can fill: its kind and the longest value the record store accepts."""

    kind: str
    max_length: int | None


@dataclass(frozen=True)
class Entity:
    name: str
    table: sa.Table
    # importable fields: name -> spec
    fields: Mapping[str, FieldSpec]
    required: tuple[str, ...]
    # normalised header -> field, for automatic mapping
    synonyms: Mapping[str, str]
    # fields that identify an existing record, in the order duplicates are matched
    match_keys: tuple[str, ...]
    # dict-valued targets: data.<key>, answers.<key>, terms.<key>
    prefixes: tuple[str, ...]
    operations: tuple[str, ...]
    field_update_fields: tuple[str, ...]
    # declared value sets (defaults; an account may override them)
    value_sets: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # common spellings of declared values, by field: slug -> canonical value
    value_synonyms: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()
    # match keys unique per account: always matched, whatever duplicate_keys says
    unique_keys: tuple[str, ...] = ()
    # match keys that identify a record only together with another field (an application: email + job)
    match_scope: Mapping[str, str] = field(default_factory=dict)
    # how a rollback retracts a record the rolled-back change set created: "delete" removes the
    # row (unless other rows point at it), "soft_delete" keeps it with `deleted_at` set
    rollback_created: str = "delete"

    def __post_init__(self) -> None:
        if self.rollback_created not in ROLLBACK_CREATED:
            raise ValueError(f"{self.name}: rollback_created is one of {', '.join(ROLLBACK_CREATED)}")

    @property
    def staged_columns(self) -> tuple[str, ...]:
        """Columns of an import's staging table, in order: the fields a record takes from a file
        (full_name is split into first and last name) and the duplicate key of an email."""
        out: list[str] = []
        for name in self.fields:
            if name == "full_name":
                continue
            out.append(name)
            if name == "email":
                out.append("email_norm")
        return tuple(out)

    def identity_keys(self, duplicate_keys: tuple[str, ...]) -> tuple[str, ...]:
        """The fields an import matches existing records on, in order: the chosen duplicate keys
        that are match keys of the entity, and its unique keys (always matched)."""
        return tuple(k for k in self.match_keys if k in duplicate_keys or k in self.unique_keys)

    @property
    def delete_blockers(self) -> tuple[tuple[sa.Table, str], ...]:
        """(table, column) pairs whose rows point at a record of this entity: they block a hard delete."""
        return tuple(
            (other, fk.parent.name)
            for other in schema.metadata.sorted_tables
            for fk in other.foreign_keys
            if fk.column.table is self.table
        )


def _text(n: int | None) -> FieldSpec:
    return FieldSpec(TEXT, n)


_PERSON: dict[str, FieldSpec] = {
    "external_id": _text(200),
    "email": _text(320),
    "first_name": _text(200),
    "last_name": _text(200),
    "full_name": _text(401),
    "phone": _text(64),
}
_PERSON_SYNONYMS: dict[str, str] = {
    "email": "email",
    "email_address": "email",
    "e_mail": "email",
    "first_name": "first_name",
    "firstname": "first_name",
    "given_name": "first_name",
    "last_name": "last_name",
    "lastname": "last_name",
    "surname": "last_name",
    "family_name": "last_name",
    "name": "full_name",
    "full_name": "full_name",
    "phone": "phone",
    "phone_number": "phone",
    "mobile": "phone",
    "telephone": "phone",
}
GENERIC_OPERATIONS = ("delete", "tags_add", "tags_remove", "tags_set", "field_update")

# default value sets; `bulkops accounts values` overrides them per account
APPLICATION_STAGES = (
    "new",
    "applied",
    "screening",
    "review",
    "interview",
    "assessment",
    "offer",
    "hired",
    "completed",
    "rejected",
    "withdrawn",
)
APPLICATION_STATUSES = ("active", "on_hold", "hired", "rejected", "withdrawn", "archived")
# common spellings, folded to slugs ("Phone Screen" -> phone_screen), of the default values
STAGE_SYNONYMS = {
    "received": "applied",
    "application_received": "applied",
    "submitted": "applied",
    "sourced": "new",
    "lead": "new",
    "prospect": "new",
    "screen": "screening",
    "phone_screen": "screening",
    "phone_screening": "screening",
    "recruiter_screen": "screening",
    "in_review": "review",
    "under_review": "review",
    "reviewing": "review",
    "reviewed": "review",
    "application_review": "review",
    "interviewing": "interview",
    "phone_interview": "interview",
    "onsite": "interview",
    "on_site": "interview",
    "onsite_interview": "interview",
    "technical_interview": "interview",
    "final_interview": "interview",
    "assessment_sent": "assessment",
    "test": "assessment",
    "take_home": "assessment",
    "offered": "offer",
    "offer_made": "offer",
    "offer_extended": "offer",
    "offer_sent": "offer",
    "hire": "hired",
    "accepted": "hired",
    "offer_accepted": "hired",
    "reject": "rejected",
    "declined": "rejected",
    "not_selected": "rejected",
    "disqualified": "rejected",
    "withdrew": "withdrawn",
    "candidate_withdrew": "withdrawn",
}
STATUS_SYNONYMS = {"hold": "on_hold", "paused": "on_hold", "onhold": "on_hold", "inactive": "archived"}
JOB_STATUSES = ("draft", "open", "active", "on_hold", "closed", "filled", "archived")
CONTRACT_STATUSES = ("draft", "sent", "signed", "active", "completed", "expired", "cancelled", "terminated")

ENTITIES: dict[str, Entity] = {
    e.name: e
    for e in (
        Entity(
            name="applications",
            table=schema.applications,
            # an application row carries its candidate (external_id is the application's)
            fields={
                **_PERSON,
                "candidate_external_id": _text(200),
                "job_code": _text(200),
                "job_title": _text(500),
                "job_location": _text(500),
                "stage": _text(64),
                "status": _text(32),
                "source": _text(200),
                "applied_at": FieldSpec(DATETIME, None),
            },
            required=("email",),
            synonyms={
                **_PERSON_SYNONYMS,
                "application_id": "external_id",
                "external_id": "external_id",
                "id": "external_id",
                "application_ref": "external_id",
                "candidate_email": "email",
                "candidate_name": "full_name",
                "candidate_id": "candidate_external_id",
                "candidate_external_id": "candidate_external_id",
                "job_code": "job_code",
                "job": "job_code",
                "job_id": "job_code",
                "requisition": "job_code",
                "requisition_id": "job_code",
                "job_title": "job_title",
                "position": "job_title",
                "role": "job_title",
                "job_location": "job_location",
                "location": "job_location",
                "stage": "stage",
                "status": "status",
                "source": "source",
                "applied_at": "applied_at",
                "applied_on": "applied_at",
                "applied": "applied_at",
                "date_applied": "applied_at",
                "application_date": "applied_at",
            },
            match_keys=("external_id", "email"),
            prefixes=("data", "answers"),
            operations=(
                "status_update",
                "stage_transition",
                "trigger_automations",
                "recollection",
                *GENERIC_OPERATIONS,
            ),
            field_update_fields=("source", "external_id"),
            value_sets={"stage": APPLICATION_STAGES, "status": APPLICATION_STATUSES},
            value_synonyms={"stage": STAGE_SYNONYMS, "status": STATUS_SYNONYMS},
            match_scope={"email": "job_code"},
        ),
        Entity(
            name="candidates",
            table=schema.users,
            fields=_PERSON,
            required=("email",),
            synonyms={
                **_PERSON_SYNONYMS,
                "candidate_id": "external_id",
                "external_id": "external_id",
                "id": "external_id",
            },
            match_keys=("external_id", "email"),
            prefixes=("data",),
            operations=GENERIC_OPERATIONS,
            field_update_fields=("first_name", "last_name", "phone", "external_id"),
            aliases=("contacts",),
            unique_keys=("email",),
        ),
        Entity(
            name="jobs",
            table=schema.jobs,
            fields={
                "external_id": _text(200),
                "code": _text(200),
                "title": _text(500),
                "description": _text(None),
                "location": _text(500),
                "status": _text(32),
                "source_url": _text(None),
            },
            required=("code",),
            synonyms={
                "job_code": "code",
                "code": "code",
                "requisition": "code",
                "requisition_id": "code",
                "job_id": "external_id",
                "external_id": "external_id",
                "id": "external_id",
                "title": "title",
                "job_title": "title",
                "position": "title",
                "description": "description",
                "job_description": "description",
                "location": "location",
                "status": "status",
                "url": "source_url",
                "source_url": "source_url",
            },
            match_keys=("external_id", "code"),
            prefixes=("data",),
            operations=GENERIC_OPERATIONS,
            field_update_fields=("title", "description", "location", "status", "code", "external_id"),
            value_sets={"status": JOB_STATUSES},
            value_synonyms={"status": {**STATUS_SYNONYMS, "published": "open", "live": "open", "unpublished": "draft"}},
            unique_keys=("code",),
        ),
        Entity(
            name="contracts",
            table=schema.contracts,
            fields={
                "external_id": _text(200),
                "application_external_id": _text(200),
                "status": _text(32),
                "template": _text(200),
            },
            required=("external_id",),
            synonyms={
                "contract_id": "external_id",
                "external_id": "external_id",
                "id": "external_id",
                "application_id": "application_external_id",
                "application_external_id": "application_external_id",
                "status": "status",
                "template": "template",
                "contract_template": "template",
            },
            match_keys=("external_id",),
            prefixes=("data", "terms"),
            operations=("create", "status_update", "trigger_automations", *GENERIC_OPERATIONS),
            field_update_fields=("template", "terms", "external_id"),
            value_sets={"status": CONTRACT_STATUSES},
            unique_keys=("external_id",),
            # a contract may have been sent out: a rollback keeps its row, soft-deleted
            rollback_created="soft_delete",
        ),
    )
}
ENTITY_NAMES: tuple[str, ...] = tuple(ENTITIES)
ALIASES: dict[str, str] = {alias: e.name for e in ENTITIES.values() for alias in e.aliases}


class UnknownEntity(LookupError):
    def __init__(self, name: str) -> None:
        self.name = name
        choices = ", ".join(ENTITY_NAMES + tuple(ALIASES))
        super().__init__(f"unknown entity {name!r}: choose one of {choices}")


def canonical(name: str) -> str:
    """'contacts' -> 'candidates'; unknown names raise UnknownEntity."""
    name = ALIASES.get(name, name)
    if name not in ENTITIES:
        raise UnknownEntity(name)
    return name


def get(name: str) -> Entity:
    return ENTITIES[canonical(name)]


def value_set(entity: str, field_name: str, overrides: Mapping[str, Any] | None = None) -> tuple[str, ...] | None:
    """The allowed values of a field, or None when the field has no declared set.

    `overrides` is an account's settings: {"value_sets": {"applications.stage": [...]}}.
    """
    e = get(entity)
    custom = ((overrides or {}).get("value_sets") or {}).get(f"{e.name}.{field_name}")
    if custom:
        return tuple(str(v) for v in custom)
    return e.value_sets.get(field_name)


def value_synonyms(entity: str, field_name: str, allowed: tuple[str, ...]) -> dict[str, str]:
    """Declared spellings of the field's values (slug -> value), limited to the allowed values."""
    syn = get(entity).value_synonyms.get(field_name) or {}
    return {k: v for k, v in syn.items() if v in allowed}
