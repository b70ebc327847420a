"""Duplicate matching: each staged row's existing record, and the outcome its duplicate strategy gives it."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import sqlalchemy as sa

from connectors.store.dialect import inline
from connectors.store.importing.staging import ACCT, ROUND
from connectors.store.schema import applications, users

if TYPE_CHECKING:
    from connectors.store.importing.writer import ImportWriter

# the duplicate strategy -> outcome of a matched row
DUPLICATE_OUTCOME = {"skip": "skipped", "update": "updated", "create": "created", "flag": "flagged"}
# the entities whose key the store holds once per account, and that key
UNIQUE_KEYS = {"candidates": "email", "jobs": "code"}


def match_duplicates(w: ImportWriter, r: int) -> bool:
    """Find each round-R row's existing record; returns whether rows were pushed to a later round."""
    s, e, table = w.stage.c, w.entity, w.table
    t = table.alias("t")
    base = sa.and_(s.rnd == ROUND, s.err.is_(None), s.match_id.is_(None))
    # each key's lookup, in order: a row takes the first one that finds a record. They go into
    # one UPDATE of the staging table (coalesce evaluates a lookup only when the earlier ones
    # found nothing), not one UPDATE per key: each pass over the staging table rewrites its rows.
    found: list[sa.ColumnElement] = []
    if "external_id" in w.duplicate_keys or e == "contracts":
        # the oldest live record with the external id (the key is not unique in the store)
        oldest = (
            sa.select(t.c.id)
            .where(t.c.account_id == ACCT, w.keys.equal(t.c.external_id, s.external_id), t.c.deleted_at.is_(None))
            .order_by(t.c.created_at, t.c.id)
            .limit(inline(1))
        )
        found.append(sa.case((s.external_id.is_not(None), oldest.scalar_subquery())))
    if e == "applications" and "email" in w.duplicate_keys:
        u, a = users.alias("u"), applications.alias("a")
        same_job = sa.or_(a.c.job_id == s.job_id, sa.and_(a.c.job_id.is_(None), s.job_id.is_(None)))
        oldest = (
            sa.select(a.c.id)
            .select_from(u.join(a, a.c.candidate_id == u.c.id))
            .where(u.c.account_id == ACCT, u.c.email_normalized == s.email_norm)
            .where(a.c.account_id == ACCT, a.c.deleted_at.is_(None), same_job)
            .order_by(a.c.created_at, a.c.id)
            .limit(inline(1))
        )
        found.append(oldest.scalar_subquery())
    unique = UNIQUE_KEYS.get(e)
    same_key = _same_key(w, e)
    if same_key is not None:
        # the unique key matches whatever duplicate_keys say: the store allows one record per key
        # (the oldest, where codes differing only in case were stored before keys were folded)
        oldest = sa.select(t.c.id).where(t.c.account_id == ACCT, same_key(t, s)).order_by(t.c.created_at, t.c.id)
        found.append(oldest.limit(inline(1)).scalar_subquery())
    values: dict[str, sa.ColumnElement] = {}
    if found:
        values["match_id"] = found[0] if len(found) == 1 else sa.func.coalesce(*found)
    if e == "applications":
        # the candidate by email, in the same pass (resolve_candidates creates the missing ones)
        values["candidate_id"] = sa.func.coalesce(s.candidate_id, candidate_by_email(s))
    if values:
        w.run(w.stage.update().values(values).where(base), r=r)
    dup = DUPLICATE_OUTCOME[w.on_duplicate]
    if unique and dup == "created":
        matched = sa.and_(s.rnd == ROUND, s.err.is_(None), s.match_id.is_not(None))
        refused = inline(f"{e} are unique by {unique}: a match cannot be created again")
        w.run(w.stage.update().values(err=refused, err_col=inline(unique)).where(matched), r=r)
    # two rows of a round matching one record by different keys: the later one waits a round
    order = sa.func.row_number().over(partition_by=s.match_id, order_by=s.row_no).label("n")
    d = sa.select(s.row_no, order).where(s.rnd == ROUND, s.err.is_(None), s.match_id.is_not(None)).subquery("d")
    later = w.stage.update().values(rnd=s.rnd + 1, match_id=None).where(s.row_no == d.c.row_no, d.c.n > 1)
    bumped = w.run(later, r=r).rowcount
    outcome = sa.case((s.match_id.is_(None), inline("created")), else_=inline(dup))
    w.run(w.stage.update().values(outcome=outcome).where(s.rnd == ROUND, s.err.is_(None)), r=r)
    if unique and dup == "updated":
        # an external-id match whose new key belongs to another record would break uniqueness;
        # a scalar subquery, not EXISTS: the planner would turn EXISTS into a join (see probe)
        other = sa.select(t.c.id).where(t.c.account_id == ACCT, same_key(t, s), t.c.id != s.match_id).limit(inline(1))
        # a record that has the key already keeps it: nothing new to clash
        m = table.alias("m")
        has_it = sa.select(same_key(m, s)).where(m.c.id == s.match_id).scalar_subquery()
        clash = sa.and_(
            s.rnd == ROUND,
            s.outcome == inline("updated"),
            other.scalar_subquery().is_not(None),
            sa.not_(sa.func.coalesce(has_it, sa.false())),
        )
        refused = inline(f"another {e[:-1]} already has this {unique}")
        w.run(w.stage.update().values(err=refused, err_col=inline(unique), outcome=None).where(clash), r=r)
    return bool(bumped)


def candidate_by_email(s: sa.ColumnCollection) -> sa.ScalarSelect:
    """SQL: the id of the account's candidate with the staged row's normalised email (one index probe)."""
    u = users.alias("u")
    return sa.select(u.c.id).where(u.c.account_id == ACCT, u.c.email_normalized == s.email_norm).scalar_subquery()


def _same_key(w: ImportWriter, entity: str) -> Callable[[sa.FromClause, sa.ColumnCollection], sa.ColumnElement] | None:
    """SQL: the record has the staged row's unique key (emails are stored normalised; job codes fold)."""
    if entity == "candidates":
        return lambda rec, row: rec.c.email_normalized == row.email_norm
    if entity == "jobs":
        return lambda rec, row: w.keys.equal(rec.c.code, row.code)
    return None
