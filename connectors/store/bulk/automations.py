"""`trigger_automations`: puts the named automations' events in the outbox for each record.

A `move_stage` automation moves the record's stage at once (its event is delivered); the others
(`send_email`, `webhook`) wait in the outbox. It cannot be rolled back.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from connectors.store import accounts, schema
from connectors.store.bulk.base import NOT_FOUND, Evaluation, Item, Operation, Outcome, ParamsError, succeeded
from connectors.store.bulk.params import declared_value, str_list
from connectors.store.bulk.records import jsonable, load_records

AUTOMATION_ACTIONS = ("send_email", "move_stage", "webhook")


def automations(conn: sa.Connection, account_id: uuid.UUID, names: Sequence[str]) -> dict[str, sa.Row]:
    """The account's automations of those names, by name."""
    a = schema.automations
    rows = conn.execute(sa.select(a).where(a.c.account_id == account_id, a.c.name.in_(list(names))))
    return {r.name: r for r in rows}


def check_automations(
    conn: sa.Connection,
    account_id: uuid.UUID,
    entity_type: str,
    names: list[str],
    account_settings: Mapping[str, Any] | None,
) -> None:
    """Whether the automations exist and can run on the entity; raises `ParamsError` naming the first that cannot."""
    rules = automations(conn, account_id, names)
    unknown = [n for n in names if n not in rules]
    if unknown:
        raise ParamsError(f"unknown automations: {', '.join(unknown)}", field="params.automations", unknown=unknown)
    for name, rule in rules.items():
        config = rule.config or {}
        if rule.action not in AUTOMATION_ACTIONS:
            raise ParamsError(f"automation {name!r} has unknown action {rule.action!r}", automation=name)
        if rule.action == "move_stage" and (entity_type != "applications" or not config.get("stage")):
            raise ParamsError(
                f"automation {name!r} moves a stage: it applies to applications and needs config.stage",
                automation=name,
            )
        if rule.action == "move_stage":
            try:
                declared_value(entity_type, "stage", str(config["stage"]), account_settings)
            except ParamsError as exc:
                raise ParamsError(
                    f"automation {name!r} moves to stage {exc.details['value']!r}, which is not a stage of "
                    f"{entity_type}: use one of {', '.join(exc.details['allowed'])}",
                    field="params.automations",
                    automation=name,
                    value=exc.details["value"],
                    allowed=exc.details["allowed"],
                ) from None
        if rule.action == "webhook" and not str(config.get("url", "")).startswith(("http://", "https://")):
            raise ParamsError(f"automation {name!r} has no http(s) config.url", automation=name)


class TriggerAutomations(Operation):
    name = "trigger_automations"
    # the messages went out
    reversible = False

    @classmethod
    def validate(cls, entity_type: str, params: dict[str, Any], settings: Mapping[str, Any] | None) -> dict[str, Any]:
        if "automation" in params and "automations" not in params:
            params["automations"] = [params.pop("automation")]
        return {"automations": str_list(params, "automations")}

    def _new_stage(self, rules: Mapping[str, sa.Row]) -> tuple[str | None, str | None]:
        """(the stage the last move_stage automation moves to, why the job refuses to run)."""
        b = self.batch
        names = b.params["automations"]
        missing = [n for n in names if n not in rules]
        if missing:
            return None, f"unknown automation: {', '.join(missing)}"
        moves = [rules[n] for n in names if rules[n].action == "move_stage"]
        if not moves or moves[-1].config.get("stage") is None:
            return None, None
        # the stage is checked when the job is created; the automation or the account's stages
        # may have changed since
        try:
            settings = accounts.settings(b.conn, b.account_id)
            return declared_value(b.entity_type, "stage", str(moves[-1].config["stage"]), settings), None
        except ParamsError as exc:
            return None, (
                f"automation {moves[-1].name!r}: {exc.details['value']!r} is not a stage of "
                f"{b.entity_type} (allowed: {', '.join(exc.details['allowed'])})"
            )

    def _event(self, name: str, rule: sa.Row, entity_id: uuid.UUID) -> dict[str, Any]:
        b = self.batch
        applied = rule.action == "move_stage"
        return {
            "id": uuid.uuid4(),
            "account_id": b.account_id,
            "automation": name,
            "action": rule.action,
            "entity_type": b.entity_type,
            "entity_id": entity_id,
            "payload": {
                "config": jsonable(rule.config),
                "entity_type": b.entity_type,
                "entity_id": str(entity_id),
                "bulk_job_id": str(b.job.id),
            },
            "status": "delivered" if applied else "pending",
            "attempts": 1 if applied else 0,
            "bulk_job_id": b.job.id,
            "created_at": b.now,
            "delivered_at": b.now if applied else None,
        }

    def evaluate(self, items: Sequence[Item]) -> Evaluation:
        b = self.batch
        names = b.params["automations"]
        rules = automations(b.conn, b.account_id, names)
        records = load_records(b.conn, b.table, b.account_id, [i.entity_id for i in items])
        new_stage, refused = self._new_stage(rules)
        outcomes: list[Outcome] = []
        events: list[dict[str, Any]] = []
        moved: list[uuid.UUID] = []
        for item in items:
            row = records.get(item.entity_id)
            if row is None:
                outcomes.append(Outcome(item.seq, item.entity_id, "failed", NOT_FOUND, before=item.planned))
                continue
            if refused:
                outcomes.append(Outcome(item.seq, item.entity_id, "failed", refused))
                continue
            before = {"stage": row.stage} if new_stage and "stage" in b.table.c else None
            mismatch = b.planned_mismatch(item, before)
            if mismatch:
                outcomes.append(Outcome(item.seq, item.entity_id, "skipped", mismatch, before=item.planned))
                continue
            item_events = [self._event(name, rules[name], item.entity_id) for name in names]
            events += item_events
            after: dict[str, Any] = {"automations": list(names), "events": [str(e["id"]) for e in item_events]}
            if before is not None:
                after["stage"] = new_stage
                moved.append(item.entity_id)
            outcomes.append(succeeded(item, before, after, b.entity_type))
        return Evaluation(outcomes, (events, moved, new_stage))

    def apply(self, evaluation: Evaluation) -> None:
        b = self.batch
        events, moved, new_stage = evaluation.changes
        if events:
            b.conn.execute(schema.automation_events.insert(), events)
        if moved:
            b.conn.execute(
                b.table.update()
                .where(b.table.c.id.in_(moved), b.table.c.account_id == b.account_id)
                .values(stage=new_stage, updated_at=b.now)
            )
