"""`create` on contracts: one contract per hired application that has none.

The job's items are application ids. A rollback soft-deletes the contracts it created (the
registry's `rollback_created` rule for contracts).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from connectors.store import schema
from connectors.store.bulk.base import NOT_FOUND, Evaluation, Item, Operation, Outcome, ParamsError, succeeded
from connectors.store.bulk.params import declared_value, str_param
from connectors.store.bulk.records import load_records

HIRED_STAGES = ("hired", "completed")


def hiring_completions(conn: sa.Connection, account_id: uuid.UUID) -> list[uuid.UUID]:
    """The account's hired or completed applications without a contract, oldest first."""
    a, c = schema.applications, schema.contracts
    has_contract = sa.exists().where(c.c.application_id == a.c.id, c.c.deleted_at.is_(None))
    return list(
        conn.scalars(
            sa.select(a.c.id)
            .where(a.c.account_id == account_id, a.c.deleted_at.is_(None), a.c.stage.in_(HIRED_STAGES), ~has_contract)
            .order_by(a.c.created_at, a.c.id)
        )
    )


class ContractCreate(Operation):
    name = "create"
    creates = (schema.contracts, "application_id")

    @classmethod
    def validate(cls, entity_type: str, params: dict[str, Any], settings: Mapping[str, Any] | None) -> dict[str, Any]:
        terms = params.get("terms", {})
        if not isinstance(terms, dict):
            raise ParamsError("params.terms must be an object", field="terms")
        status = str_param({"status": params.get("status", "draft")}, "status", 32)
        status = declared_value(entity_type, "status", status, settings)
        return {"template": str_param(params, "template", 200), "terms": terms, "status": status}

    def _with_contract(self, application_ids: list[uuid.UUID]) -> set[uuid.UUID]:
        t = schema.contracts
        if not application_ids:
            return set()
        return set(
            self.batch.conn.scalars(
                sa.select(t.c.application_id).where(
                    t.c.account_id == self.batch.account_id,
                    t.c.application_id.in_(application_ids),
                    t.c.deleted_at.is_(None),
                )
            )
        )

    def evaluate(self, items: Sequence[Item]) -> Evaluation:
        b = self.batch
        p = b.params
        apps = load_records(b.conn, schema.applications, b.account_id, [i.entity_id for i in items])
        existing = self._with_contract(list(apps))
        outcomes: list[Outcome] = []
        rows: list[dict[str, Any]] = []
        for item in items:
            app = apps.get(item.entity_id)
            if app is None:
                outcomes.append(Outcome(item.seq, item.entity_id, "failed", "application " + NOT_FOUND))
                continue
            if app.stage not in HIRED_STAGES:
                why = f"application is in stage {app.stage!r}, not {' or '.join(HIRED_STAGES)}"
                outcomes.append(Outcome(item.seq, item.entity_id, "skipped", why))
                continue
            if app.id in existing:
                outcomes.append(Outcome(item.seq, item.entity_id, "skipped", "application already has a contract"))
                continue
            contract_id = uuid.uuid4()
            after = {
                "contract_id": str(contract_id),
                "template": p["template"],
                "status": p["status"],
                "terms": p["terms"],
            }
            rows.append(
                {
                    "id": contract_id,
                    "account_id": b.account_id,
                    "application_id": app.id,
                    "status": p["status"],
                    "template": p["template"],
                    "terms": p["terms"],
                    "created_at": b.now,
                    "updated_at": b.now,
                    "bulk_job_id": b.job.id,
                }
            )
            outcomes.append(succeeded(item, None, after, "contracts", contract_id))
        return Evaluation(outcomes, rows)

    def apply(self, evaluation: Evaluation) -> None:
        if evaluation.changes:
            self.batch.conn.execute(schema.contracts.insert(), evaluation.changes)
