"""Documents and the skills found in them: the record store's side of a document import.

A document import's records (applicants, jobs) are written by the import writer; this module
stores what belongs to them: the document rows (original file by content hash, version, task
status) and `candidate_skills` / `job_skills` with their evidence, each with its audit row in the
import's change set and the import's id as provenance, so `changes.rollback` removes them with
the records or on their own (`changes.PARTS`).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from connectors.store import changes, schema
from connectors.store.dialect import dialect_of

d = schema.documents
# document kind -> (its skills table, the owner column in both)
OWNERS = {"resume": (schema.candidate_skills, "candidate_id"), "job_description": (schema.job_skills, "job_id")}
ENTITY_OF = {"resume": "candidates", "job_description": "jobs"}


def _now() -> datetime:
    return datetime.now(UTC)


def by_sha(conn: sa.Connection, account_id: uuid.UUID, kind: str, shas: Iterable[str]) -> dict[str, sa.Row]:
    """The account's documents of KIND with these content hashes, by hash."""
    shas = list(set(shas))
    out: dict[str, sa.Row] = {}
    for i in range(0, len(shas), 500):
        q = sa.select(d).where(
            d.c.account_id == account_id, d.c.kind == kind, d.c.content_sha256.in_(shas[i : i + 500])
        )
        out.update({r.content_sha256: r for r in conn.execute(q)})
    return out


def get(conn: sa.Connection, document_id: uuid.UUID) -> sa.Row | None:
    return conn.execute(sa.select(d).where(d.c.id == document_id)).first()


def by_partition(conn: sa.Connection, partition_key: str) -> sa.Row | None:
    return conn.execute(sa.select(d).where(d.c.partition_key == partition_key).order_by(d.c.created_at.desc())).first()


def candidates_by_email(conn: sa.Connection, account_id: uuid.UUID, emails: Iterable[str]) -> dict[str, uuid.UUID]:
    """Applicant ids by normalised email (the import's duplicate key)."""
    u = schema.users
    emails = list(set(emails))
    out: dict[str, uuid.UUID] = {}
    for i in range(0, len(emails), 500):
        q = sa.select(u.c.email_normalized, u.c.id).where(
            u.c.account_id == account_id, u.c.email_normalized.in_(emails[i : i + 500]), u.c.deleted_at.is_(None)
        )
        out.update(dict(conn.execute(q).all()))
    return out


def jobs_by_code(conn: sa.Connection, account_id: uuid.UUID, codes: Iterable[str]) -> dict[str, uuid.UUID]:
    """Job ids by code, compared folded (as the import matches them)."""
    j = schema.jobs
    folded = list({c.strip().lower() for c in codes})
    out: dict[str, uuid.UUID] = {}
    for i in range(0, len(folded), 500):
        q = sa.select(sa.func.lower(j.c.code), j.c.id).where(
            j.c.account_id == account_id, sa.func.lower(j.c.code).in_(folded[i : i + 500])
        )
        out.update(dict(conn.execute(q).all()))
    return out


def ensure_skills(conn: sa.Connection, skills: Sequence[Any]) -> dict[str, uuid.UUID]:
    """Skill ids by name, adding the taxonomy entries (name, source, uri) not in `skills` yet."""
    s = schema.skills
    wanted = {sk.name.lower(): sk for sk in skills}
    if not wanted:
        return {}
    have = dict(conn.execute(sa.select(s.c.name_normalized, s.c.id).where(s.c.name_normalized.in_(list(wanted)))).all())
    missing = [
        {"id": uuid.uuid4(), "name": sk.name, "name_normalized": key, "source": sk.source, "uri": sk.uri or None}
        for key, sk in wanted.items()
        if key not in have
    ]
    if missing:
        ins = dialect_of(conn).insert(s).on_conflict_do_nothing(index_elements=["name_normalized"])
        conn.execute(ins, missing)
        have = dict(
            conn.execute(sa.select(s.c.name_normalized, s.c.id).where(s.c.name_normalized.in_(list(wanted)))).all()
        )
    return {sk.name: have[key] for key, sk in wanted.items()}


def next_versions(conn: sa.Connection, kind: str, owners: Iterable[uuid.UUID]) -> dict[uuid.UUID, int]:
    """The next version number of each owner's documents of KIND (1 for none yet)."""
    _, col = OWNERS[kind]
    owners = list(set(owners))
    out = dict.fromkeys(owners, 1)
    for i in range(0, len(owners), 500):
        q = (
            sa.select(d.c[col], sa.func.max(d.c.version))
            .where(d.c.kind == kind, d.c[col].in_(owners[i : i + 500]))
            .group_by(d.c[col])
        )
        out.update({owner: (v or 0) + 1 for owner, v in conn.execute(q)})
    return out


def _image(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: (str(v) if isinstance(v, uuid.UUID | datetime) else v) for k, v in values.items() if k != "text"}


def insert_document(conn: sa.Connection, cs: changes.ChangeSet, values: Mapping[str, Any]) -> uuid.UUID:
    """A new document row in change set CS (audited), its id."""
    now = _now()
    row = {"id": uuid.uuid4(), "account_id": cs.account_id, "import_id": cs.id, **values, "updated_at": now}
    conn.execute(d.insert().values(**row, created_at=now))
    changes.write_audit_rows(conn, cs, "document.create", [("documents", row["id"], None, _image(row))], now=now)
    return row["id"]


def insert_documents(conn: sa.Connection, cs: changes.ChangeSet, rows: Sequence[Mapping[str, Any]]) -> None:
    """New document rows (each with its `id`) in change set CS, audited: two statements for all."""
    if not rows:
        return
    now = _now()
    full = [{"account_id": cs.account_id, "import_id": cs.id, **r, "created_at": now, "updated_at": now} for r in rows]
    # executemany needs the same keys in every row
    keys = set().union(*full)
    conn.execute(d.insert(), [{k: r.get(k) for k in keys} for r in full])
    changes.write_audit_rows(
        conn, cs, "document.create", [("documents", r["id"], None, _image(r)) for r in full], now=now
    )


def insert_skills(
    conn: sa.Connection,
    cs: changes.ChangeSet,
    kind: str,
    found: Sequence[tuple[uuid.UUID, uuid.UUID, Sequence[Any]]],
    skill_meta: Mapping[str, Any],
) -> dict[uuid.UUID, int]:
    """The skills found in new documents, (owner, document id, found) each, audited in CS; count per document."""
    table, col = OWNERS[kind]
    now = _now()
    ids = ensure_skills(conn, [skill_meta[name] for name in {f.skill for _, _, fs in found for f in fs}])
    rows = [
        {
            "id": uuid.uuid4(),
            "account_id": cs.account_id,
            col: owner,
            "skill_id": ids[f.skill],
            "document_id": doc_id,
            "page": f.page,
            "span_start": f.start,
            "span_end": f.end,
            "evidence": f.text[:500],
            "mentions": f.mentions,
            "import_id": cs.id,
            "created_at": now,
        }
        for owner, doc_id, fs in found
        for f in fs
    ]
    if rows:
        conn.execute(table.insert(), rows)
        changes.write_audit_rows(
            conn, cs, f"{table.name}.create", [(table.name, r["id"], None, _image(r)) for r in rows], now=now
        )
    return {doc_id: len(fs) for _, doc_id, fs in found}


def reuse_document(
    conn: sa.Connection, cs: changes.ChangeSet, document_id: uuid.UUID, values: Mapping[str, Any]
) -> None:
    """Give a document row that belongs to no record yet (its earlier reading failed) to change set CS."""
    before = get(conn, document_id)
    conn.execute(d.update().where(d.c.id == document_id).values(**values, import_id=cs.id, updated_at=_now()))
    changes.write_audit_rows(
        conn,
        cs,
        "document.update",
        [("documents", document_id, _image(before._mapping) if before else None, _image(values))],
        now=_now(),
    )


def set_status(conn: sa.Connection, document_id: uuid.UUID, **values: Any) -> None:
    """The document's task fields (status, error_kind, error_message, attempts, pages, text)."""
    conn.execute(d.update().where(d.c.id == document_id).values(**values, updated_at=_now()))


def replace_skills(
    conn: sa.Connection,
    cs: changes.ChangeSet,
    kind: str,
    owner_id: uuid.UUID,
    document_id: uuid.UUID,
    found: Sequence[Any],
    skill_meta: Mapping[str, Any],
) -> int:
    """The skills FOUND in a document, replacing those stored for it before; audited in CS. How many."""
    table, col = OWNERS[kind]
    now = _now()
    old = conn.execute(sa.select(table).where(table.c.document_id == document_id)).all()
    if old:
        changes.write_audit_rows(
            conn, cs, f"{table.name}.delete", [(table.name, r.id, _image(r._mapping), None) for r in old], now=now
        )
        conn.execute(table.delete().where(table.c.document_id == document_id))
    ids = ensure_skills(conn, [skill_meta[f.skill] for f in found])
    rows = [
        {
            "id": uuid.uuid4(),
            "account_id": cs.account_id,
            col: owner_id,
            "skill_id": ids[f.skill],
            "document_id": document_id,
            "page": f.page,
            "span_start": f.start,
            "span_end": f.end,
            "evidence": f.text[:500],
            "mentions": f.mentions,
            "import_id": cs.id,
            "created_at": now,
        }
        for f in found
    ]
    if rows:
        conn.execute(table.insert(), rows)
        changes.write_audit_rows(
            conn, cs, f"{table.name}.create", [(table.name, r["id"], None, _image(r)) for r in rows], now=now
        )
    return len(rows)


def skills_of(conn: sa.Connection, kind: str, owner_id: uuid.UUID) -> list[dict[str, Any]]:
    """The skills of an applicant or job from its newest document: name, page, span, evidence."""
    table, col = OWNERS[kind]
    latest = (
        sa.select(d.c.id)
        .where(d.c[col] == owner_id, d.c.kind == kind, d.c.status == "completed")
        .order_by(d.c.version.desc())
        .limit(1)
        .scalar_subquery()
    )
    s = schema.skills
    q = (
        sa.select(s.c.name, table.c.page, table.c.span_start, table.c.span_end, table.c.evidence, table.c.mentions)
        .join(s, s.c.id == table.c.skill_id)
        .where(table.c[col] == owner_id, table.c.document_id == latest)
        .order_by(table.c.page, table.c.span_start)
    )
    return [dict(r._mapping) for r in conn.execute(q)]


def of_import(conn: sa.Connection, account_id: uuid.UUID, import_id: uuid.UUID) -> list[dict[str, Any]]:
    """The documents a document import stored, oldest first."""
    cols = [c for c in d.c if c.name != "text"]
    q = sa.select(*cols).where(d.c.account_id == account_id, d.c.import_id == import_id).order_by(d.c.created_at)
    return [dict(r._mapping) for r in conn.execute(q)]


def tasks(
    conn: sa.Connection, account_id: uuid.UUID, kind: str | None = None, limit: int = 100
) -> list[dict[str, Any]]:
    """Skills-extraction tasks, newest first: document, status, reason, attempts."""
    cols = [
        d.c[c] for c in ("id", "kind", "filename", "source_url", "status", "error_kind", "error_message", "attempts")
    ]
    q = sa.select(*cols, d.c.partition_key, d.c.created_at).where(d.c.account_id == account_id)
    if kind:
        q = q.where(d.c.kind == kind)
    return [dict(r._mapping) for r in conn.execute(q.order_by(d.c.created_at.desc()).limit(limit))]
