"""`recollection`: asks each application's candidate for missing information (a request and its email).

A rollback cancels the requests still open (a `Part` of applications that closes, `changes.PARTS`);
the emails already queued are not taken back.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from connectors.store import schema
from connectors.store.bulk.base import NOT_FOUND, Evaluation, Item, Operation, Outcome, ParamsError, succeeded
from connectors.store.bulk.params import str_list
from connectors.store.bulk.records import load_records


class Recollection(Operation):
    name = "recollection"
    creates = (schema.recollection_requests, "application_id")

    @classmethod
    def validate(cls, entity_type: str, params: dict[str, Any], settings: Mapping[str, Any] | None) -> dict[str, Any]:
        fields = str_list(params, "fields", allow_empty=True) if "fields" in params else []
        message = params.get("message")
        if message is not None and not isinstance(message, str):
            raise ParamsError("params.message must be a string", field="message")
        return {"fields": fields, "message": message}

    def evaluate(self, items: Sequence[Item]) -> Evaluation:
        b = self.batch
        fields, message = b.params.get("fields", []), b.params.get("message")
        records = load_records(b.conn, b.table, b.account_id, [i.entity_id for i in items])
        outcomes: list[Outcome] = []
        requests: list[dict[str, Any]] = []
        emails: list[dict[str, Any]] = []
        for item in items:
            row = records.get(item.entity_id)
            if row is None:
                outcomes.append(Outcome(item.seq, item.entity_id, "failed", NOT_FOUND))
                continue
            request_id = uuid.uuid4()
            requests.append(
                {
                    "id": request_id,
                    "account_id": b.account_id,
                    "application_id": row.id,
                    "candidate_id": row.candidate_id,
                    "fields": fields,
                    "message": message,
                    "status": "requested",
                    "bulk_job_id": b.job.id,
                    "created_at": b.now,
                    "updated_at": b.now,
                }
            )
            emails.append(
                {
                    "id": uuid.uuid4(),
                    "account_id": b.account_id,
                    "automation": "recollection",
                    "action": "send_email",
                    "entity_type": "applications",
                    "entity_id": row.id,
                    "payload": {
                        "template": "recollection",
                        "recollection_request_id": str(request_id),
                        "candidate_id": str(row.candidate_id),
                        "fields": fields,
                        "message": message,
                    },
                    "status": "pending",
                    "attempts": 0,
                    "bulk_job_id": b.job.id,
                    "created_at": b.now,
                }
            )
            outcomes.append(
                succeeded(
                    item, None, {"recollection_request_id": str(request_id), "status": "requested"}, b.entity_type
                )
            )
        return Evaluation(outcomes, (requests, emails))

    def apply(self, evaluation: Evaluation) -> None:
        requests, emails = evaluation.changes
        if requests:
            self.batch.conn.execute(schema.recollection_requests.insert(), requests)
            self.batch.conn.execute(schema.automation_events.insert(), emails)
