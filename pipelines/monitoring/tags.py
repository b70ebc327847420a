"""Run tags the UI's Runs page filters by: `bulkops/kind`, `bulkops/account`, `bulkops/entity`, `bulkops/change_set_id`.

A run learns its change set (an import's id, a bulk job's id) only once it runs, whoever launched it
(Launchpad, sensor, CLI, API), so the run tags itself when it knows.
"""

from __future__ import annotations

import logging
import uuid

import dagster as dg

KIND, ACCOUNT, ENTITY, CHANGE_SET = "bulkops/kind", "bulkops/account", "bulkops/entity", "bulkops/change_set_id"
log = logging.getLogger("bulkops.monitoring")
# tags this process added, by run: `context.run` keeps the tags the run started with
_added: dict[str, dict[str, str]] = {}


def tag_run(
    context: dg.OpExecutionContext | dg.AssetExecutionContext,
    *,
    kind: str,
    account: str | None = None,
    entity: str | None = None,
    change_set_id: uuid.UUID | str | None = None,
) -> None:
    """Add the run's kind, account, entity and change set to its tags (those it lacks or that differ)."""
    wanted = {KIND: kind, ACCOUNT: account, ENTITY: entity, CHANGE_SET: str(change_set_id) if change_set_id else None}
    run_id = context.run.run_id
    have = {**context.run.tags, **_added.get(run_id, {})}
    new = {k: v for k, v in wanted.items() if v and have.get(k) != v}
    if not new:
        return
    try:
        context.instance.add_run_tags(run_id, new)
        _added.setdefault(run_id, {}).update(new)
    except Exception:  # tags help find a run; they never fail it
        log.warning("could not tag run %s with %s", context.run.run_id, new, exc_info=True)
