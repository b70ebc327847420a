"""The writes of a round: create the new records, update the matched ones, flag the rest for review.

Every created or updated record gets an audit row (`audit_rows`); an update's carries the
before-image rollback restores. A matched row whose values equal its record's is `unchanged`:
no UPDATE and no audit row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import sqlalchemy as sa

from connectors.store.dialect import inline
from connectors.store.importing.audit import audit_rows
from connectors.store.importing.staging import ACCT, DEFAULT_STAGE, FORM, IMP, NOW, ROUND, TIMESTAMP_COLUMNS
from connectors.store.schema import form_submissions, import_flags

if TYPE_CHECKING:
    from connectors.store.importing.writer import ImportWriter


@dataclass
class Spec:
    """How staged rows become records of one entity."""

    insert: dict[str, sa.ColumnElement]  # column -> its value from the staged row
    update: dict[str, sa.ColumnElement]  # column -> its new value from the staged row and the record
    audit: tuple[str, ...]  # the plain columns audit rows hold (beside the JSON ones)


def spec(w: ImportWriter) -> Spec:
    """The insert values, update assignments and audited columns of the writer's entity."""
    s, t, d = w.stage.c, w.table.c, w.dialect

    def kept(column: str) -> sa.ColumnElement:
        # an empty value keeps the record's, unless the writer clears that column (and it may be empty)
        if column in w.clear and t[column].nullable:
            return s[column]
        return sa.func.coalesce(s[column], t[column])

    def merged(column: str, kind: str) -> sa.ColumnElement:
        return d.json_merge(t[column], w.json_of(kind))

    if w.entity == "applications":
        return Spec(
            insert={
                "candidate_id": s.candidate_id,
                "job_id": s.job_id,
                "stage": sa.func.coalesce(s.stage, DEFAULT_STAGE),
                "status": sa.func.coalesce(s.status, inline("active")),
                "source": s.source,
                "applied_at": s.applied_at,
                "external_id": s.external_id,
                "data": w.json_of("data"),
            },
            update={
                "candidate_id": s.candidate_id,
                "job_id": kept("job_id"),
                "stage": kept("stage"),
                "status": kept("status"),
                "source": kept("source"),
                "applied_at": kept("applied_at"),
                "external_id": sa.func.coalesce(t.external_id, s.external_id),
                "data": merged("data", "data"),
            },
            audit=("candidate_id", "job_id", "stage", "status", "source", "applied_at", "external_id"),
        )
    if w.entity == "candidates":
        return Spec(
            insert={
                "role": inline("candidate"),
                "email": s.email,
                "email_normalized": s.email_norm,
                "first_name": s.first_name,
                "last_name": s.last_name,
                "phone": s.phone,
                "external_id": s.external_id,
                "data": w.json_of("data"),
            },
            update={
                "email": s.email,
                "email_normalized": s.email_norm,
                "first_name": kept("first_name"),
                "last_name": kept("last_name"),
                "phone": kept("phone"),
                "external_id": sa.func.coalesce(t.external_id, s.external_id),
                "data": merged("data", "data"),
            },
            audit=("email", "email_normalized", "first_name", "last_name", "phone", "external_id"),
        )
    if w.entity == "jobs":
        return Spec(
            insert={
                "code": s.code,
                "title": sa.func.coalesce(s.title, s.code),
                "description": s.description,
                "location": s.location,
                "status": sa.func.coalesce(s.status, inline("open")),
                "origin": inline("uploaded"),
                "source_url": s.source_url,
                "external_id": s.external_id,
                "data": w.json_of("data"),
            },
            update={
                "code": w.keys.kept(t.code, s.code),
                "title": kept("title"),
                "description": kept("description"),
                "location": kept("location"),
                "status": kept("status"),
                "source_url": kept("source_url"),
                "external_id": sa.func.coalesce(t.external_id, s.external_id),
                "data": merged("data", "data"),
            },
            audit=("code", "title", "description", "location", "status", "source_url", "external_id"),
        )
    return Spec(
        insert={
            "application_id": s.ref_id,
            "status": sa.func.coalesce(s.status, inline("draft")),
            "template": s.template,
            "terms": w.json_of("terms"),
            "external_id": s.external_id,
            "data": w.json_of("data"),
        },
        update={
            "application_id": sa.func.coalesce(s.ref_id, t.application_id),
            "status": kept("status"),
            "template": kept("template"),
            "terms": merged("terms", "terms"),
            "data": merged("data", "data"),
        },
        audit=("application_id", "status", "template", "external_id"),
    )


def _image(w: ImportWriter, rows: sa.FromClause, plain: tuple[str, ...], json: tuple[str, ...]) -> sa.ColumnElement:
    """SQL: the JSON object of the PLAIN and JSON columns of ROWS."""
    value = w.dialect.json_value
    return w.dialect.json_object([(c, rows.c[c]) for c in plain] + [(c, value(rows.c[c])) for c in json])


def create(w: ImportWriter, r: int) -> int:
    """Insert round R's `created` rows as new records (and an application's form submission); how many."""
    s, table, to_write = w.stage.c, w.table, spec(w)
    created = sa.and_(s.rnd == ROUND, s.outcome == inline("created"))
    json = ("data", "terms") if table.name == "contracts" else ("data",)
    insert = table.insert().from_select(
        ["id", "account_id", *to_write.insert, "import_id", "created_at", "updated_at"],
        sa.select(s.new_id, ACCT, *to_write.insert.values(), IMP, NOW, NOW).where(created),
    )
    returning = (table.c.id, *(table.c[c] for c in (*to_write.audit, *json)))

    def audited(rows: sa.FromClause) -> sa.Insert:
        after = _image(w, rows, to_write.audit, json)
        return audit_rows(f"{w.kind}.create", w.entity, sa.select(rows.c.id, sa.null(), after), w.stamp)

    def inserted() -> sa.Select:
        return sa.select(*returning).select_from(w.stage.join(table, table.c.id == s.new_id)).where(created)

    params = {**w.params, "r": r}
    n = w.dialect.insert_then(w.conn, insert, returning, audited, inserted, params)
    if n and w.entity == "applications":
        _create_form_submissions(w, created, params)
    return n


def _create_form_submissions(w: ImportWriter, created: sa.ColumnElement, params: dict) -> None:
    """The form submission of each application the round created (its answers, submitted when applied)."""
    s, f, d = w.stage.c, form_submissions, w.dialect
    columns = ["id", "account_id", "application_id", "form_name", "answers", "submitted_at", "import_id"]
    values = [d.uuid_from(w.prefix["form"], s.row_no), ACCT, s.new_id, FORM, w.json_of("answers"), s.applied_at, IMP]
    insert = f.insert().from_select([*columns, "created_at", "updated_at"], sa.select(*values, NOW, NOW).where(created))
    returning = (f.c.id, f.c.application_id, f.c.form_name, f.c.answers)

    def audited(rows: sa.FromClause) -> sa.Insert:
        after = _image(w, rows, ("application_id", "form_name"), ("answers",))
        return audit_rows(f"{w.kind}.create", "form_submissions", sa.select(rows.c.id, sa.null(), after), w.stamp)

    def inserted() -> sa.Select:
        return sa.select(*returning).select_from(w.stage.join(f, f.c.application_id == s.new_id)).where(created)

    d.insert_then(w.conn, insert, returning, audited, inserted, params)


def update(w: ImportWriter, r: int) -> int:
    """Update the records of round R's `updated` rows, or mark the rows `unchanged`; how many were updated."""
    s, table, to_write = w.stage.c, w.table, spec(w)
    assignments = to_write.update
    json = tuple(c for c in ("data", "terms") if c in assignments)
    plain = tuple(c for c in to_write.audit if c in assignments)
    matched = sa.and_(s.rnd == ROUND, s.outcome == inline("updated"))
    # a row that would change no value is unchanged: no audit row, no UPDATE. Marked first, by
    # one probe of its record per row (`same` evaluated once): the audit rows and the UPDATE
    # then take the rows still `updated`, and build images for the changed rows only
    same = sa.select(w.dialect.same_as_stored(table, table, assignments)).where(table.c.id == s.match_id)
    w.run(w.stage.update().values(outcome=inline("unchanged")).where(matched, same.scalar_subquery()), r=r)
    before = _image(w, table, plain, json)
    after = w.dialect.json_object([(c, assignments[c]) for c in (*plain, *json)])
    changed = sa.select(table.c.id, before, after).select_from(w.stage.join(table, table.c.id == s.match_id))
    # before-image first: rollback restores it
    n = w.run(audit_rows(f"{w.kind}.update", w.entity, changed.where(matched), w.stamp), r=r).rowcount
    if n:
        written = table.update().values({**assignments, "updated_at": NOW})
        w.run(written.where(matched, table.c.id == s.match_id), r=r)
    return n


def flag(w: ImportWriter, r: int) -> None:
    """Queue round R's `flagged` rows for review with their staged values."""
    s, f = w.stage.c, import_flags
    fields = [c for c in w.columns if not c.startswith("x_") and c not in TIMESTAMP_COLUMNS]
    data = w.dialect.json_object_without_nulls([(c, s[c]) for c in fields])
    columns = [
        "id",
        "account_id",
        "import_id",
        "row_number",
        "entity_type",
        "entity_id",
        "reason",
        "data",
        "created_at",
    ]
    values = [s.new_id, ACCT, IMP, s.row_no, inline(w.entity), s.match_id, inline("duplicate"), data, NOW]
    flagged = sa.and_(s.rnd == ROUND, s.outcome == inline("flagged"))
    w.run(f.insert().from_select(columns, sa.select(*values).where(flagged)), r=r)
