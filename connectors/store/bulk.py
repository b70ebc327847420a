"""Bulk operations on account records: operation specs, plans, and batched, audited writes.

A bulk job's records are its `bulk_job_items`, numbered by `seq`. Work walks seq ranges; each
batch is one transaction holding the record changes, the item outcomes, the audit rows and the
job counters, and it advances `bulk_jobs.next_seq`. A run killed mid-batch therefore leaves the
batch unapplied, and the next run starts at `next_seq`: no record is changed twice.

PostgreSQL runs the hot operations (status, stage, field update, soft delete) as one set-based
statement per batch; everything else, and SQLite, evaluates records in Python and writes with
executemany.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from connectors.store import accounts, registry, schema
from connectors.store.faults import is_transient as _is_transient
from connectors.store.store import RecordStore

ENTITY_ALIASES = registry.ALIASES
GENERIC_OPERATIONS = registry.GENERIC_OPERATIONS
OPERATIONS: dict[str, tuple[str, ...]] = {n: e.operations for n, e in registry.ENTITIES.items()}
ROLLBACK = "rollback"
# operations whose effects can be undone from item before-images
ROLLBACKABLE = {
    "status_update",
    "stage_transition",
    "field_update",
    "delete",
    "tags_add",
    "tags_remove",
    "tags_set",
    "recollection",
    "create",
}
FIELD_ALLOW_LIST: dict[str, tuple[str, ...]] = {n: e.field_update_fields for n, e in registry.ENTITIES.items()}
HIRED_STAGES = ("hired", "completed")
AUTOMATION_ACTIONS = ("send_email", "move_stage", "webhook")
# dependents that block a hard delete (table, column), from the schema's foreign keys
_HARD_DELETE_BLOCKERS: dict[str, tuple[tuple[sa.Table, str], ...]] = {
    n: e.delete_blockers for n, e in registry.ENTITIES.items()
}
DEFAULT_BATCH_SIZE = {"postgresql": 20_000, "sqlite": 500}
ANALYZE_THRESHOLD = 10_000

NOT_FOUND = "not found"

items_t = schema.bulk_job_items
jobs_t = schema.bulk_jobs


class ParamsError(ValueError):
    """Params that do not fit the operation; `details` names the offending fields."""

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.details = details


class JobGone(LookupError):
    pass


def canonical_entity_type(entity_type: str) -> str:
    return ENTITY_ALIASES.get(entity_type, entity_type)


def _str_param(params: Mapping[str, Any], key: str, max_len: int) -> str:
    value = params.get(key)
    if not isinstance(value, str) or not value.strip() or len(value) > max_len:
        raise ParamsError(f"params.{key} must be a non-empty string of at most {max_len} characters", field=key)
    return value.strip()


def _str_list(params: Mapping[str, Any], key: str, *, max_len: int = 200, allow_empty: bool = False) -> list[str]:
    value = params.get(key)
    if not isinstance(value, list) or (not value and not allow_empty):
        raise ParamsError(f"params.{key} must be a {'' if allow_empty else 'non-empty '}list of strings", field=key)
    out: list[str] = []
    for v in value:
        if not isinstance(v, str) or not v.strip() or len(v) > max_len:
            raise ParamsError(
                f"params.{key} entries must be non-empty strings of at most {max_len} characters", field=key
            )
        if v.strip() not in out:
            out.append(v.strip())
    return out


def declared_value(
    entity_type: str,
    field_name: str,
    value: str,
    account_settings: Mapping[str, Any] | None,
    *,
    param: str | None = None,
) -> str:
    """`value` as spelled in the field's value set (the account's, else the default).

    Raises:
        ParamsError: the set does not hold it; `details` name the field, the value and the allowed values.
    """
    found = accounts.canonical_value(entity_type, field_name, value, account_settings)
    if found is None:
        allowed = list(registry.value_set(entity_type, field_name, account_settings) or ())
        raise ParamsError(
            f"params.{param or field_name} {value!r} is not a {field_name} of {entity_type}: use one of "
            f"{', '.join(allowed)} (an account can change them: bulkops accounts values set ACCOUNT "
            f"{entity_type}.{field_name} VALUE...)",
            field=param or field_name,
            value=value,
            allowed=allowed,
        )
    return found


def validate_params(
    entity_type: str,
    operation: str,
    params: Mapping[str, Any] | None,
    account_settings: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Check and normalise the params of an operation; raises `ParamsError`.

    Status and stage values must be in the entity's value set: `account_settings` (the
    account's `accounts.settings`) overrides the registry's defaults.
    """
    params = dict(params or {})
    if operation == "status_update":
        return {"status": declared_value(entity_type, "status", _str_param(params, "status", 32), account_settings)}
    if operation == "stage_transition":
        return {"stage": declared_value(entity_type, "stage", _str_param(params, "stage", 64), account_settings)}
    if operation == "trigger_automations":
        if "automation" in params and "automations" not in params:
            params["automations"] = [params.pop("automation")]
        return {"automations": _str_list(params, "automations")}
    if operation == "recollection":
        fields = _str_list(params, "fields", allow_empty=True) if "fields" in params else []
        message = params.get("message")
        if message is not None and not isinstance(message, str):
            raise ParamsError("params.message must be a string", field="message")
        return {"fields": fields, "message": message}
    if operation == "create":
        terms = params.get("terms", {})
        if not isinstance(terms, dict):
            raise ParamsError("params.terms must be an object", field="terms")
        status = params.get("status", "draft")
        status = declared_value(entity_type, "status", _str_param({"status": status}, "status", 32), account_settings)
        return {"template": _str_param(params, "template", 200), "terms": terms, "status": status}
    if operation == "delete":
        hard = params.get("hard", False)
        if not isinstance(hard, bool):
            raise ParamsError("params.hard must be a boolean", field="hard")
        return {"hard": hard}
    if operation in ("tags_add", "tags_remove", "tags_set"):
        return {"tags": _str_list(params, "tags", allow_empty=operation == "tags_set")}
    if operation == "field_update":
        fields = params.get("fields")
        if not isinstance(fields, dict) or not fields:
            raise ParamsError("params.fields must be a non-empty object of field: value", field="fields")
        allowed = FIELD_ALLOW_LIST[entity_type]
        unknown = sorted(set(fields) - set(allowed))
        if unknown:
            raise ParamsError(
                f"fields not updatable on {entity_type}: {', '.join(unknown)} (allowed: {', '.join(allowed)})",
                field="fields",
                unknown=unknown,
                allowed=list(allowed),
            )
        table = schema.ENTITY_TABLES[entity_type]
        for name, value in fields.items():
            col = table.c[name]
            if isinstance(col.type, sa.JSON):
                if not isinstance(value, dict):
                    raise ParamsError(f"params.fields.{name} must be an object", field=name)
            elif value is not None:
                length = getattr(col.type, "length", None)
                if not isinstance(value, str) or (length and len(value) > length):
                    raise ParamsError(
                        f"params.fields.{name} must be a string of at most {length} characters", field=name
                    )
                if not col.nullable and not value.strip():
                    raise ParamsError(f"params.fields.{name} must not be empty", field=name)
            elif not col.nullable:
                raise ParamsError(f"params.fields.{name} cannot be null", field=name)
        return {
            "fields": {
                name: declared_value(entity_type, name, value, account_settings, param=f"fields.{name}")
                if isinstance(value, str)
                else value
                for name, value in fields.items()
            }
        }
    if operation == ROLLBACK:
        return params
    raise ParamsError(f"unknown operation {operation!r}", field="operation")


def jsonable(value: Any) -> Any:
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class Outcome:
    seq: int
    entity_id: uuid.UUID
    status: str
    error: str | None = None
    before: Any = None
    after: Any = None
    # audit rows: (entity_type, entity_id, before, after)
    audit: list[tuple[str, uuid.UUID, Any, Any]] = field(default_factory=list)


@dataclass
class BatchResult:
    lo: int
    hi: int
    succeeded: int
    failed: int
    skipped: int
    job_status: str
    processed_count: int
    failed_count: int
    total_count: int


@dataclass
class _Item:
    seq: int
    entity_id: uuid.UUID
    planned: Any


# test hook: called as hook(point, batch_number) inside the batch transaction
fault_hook: Callable[[str, int], None] | None = None


def _set_spec(entity_type: str, operation: str, params: Mapping[str, Any], now: datetime) -> dict[str, Any] | None:
    """Column values a 'set' operation writes (the same for every record), or None."""
    if operation == "status_update":
        return {"status": params["status"]}
    if operation == "stage_transition":
        return {"stage": params["stage"]}
    if operation == "field_update":
        return dict(params["fields"])
    if operation == "delete" and not params.get("hard"):
        return {"deleted_at": now}
    return None


def _soft_deletable(table: sa.Table) -> bool:
    return "deleted_at" in table.c


def _load_records(
    conn: sa.Connection,
    table: sa.Table,
    account_id: uuid.UUID,
    ids: Sequence[uuid.UUID],
    *,
    include_deleted: bool = False,
    lock: bool = True,
) -> dict[uuid.UUID, sa.Row]:
    if not ids:
        return {}
    stmt = sa.select(table).where(table.c.id.in_(ids), table.c.account_id == account_id)
    if _soft_deletable(table) and not include_deleted:
        stmt = stmt.where(table.c.deleted_at.is_(None))
    if lock and conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    return {row.id: row for row in conn.execute(stmt)}


def _load_tags(
    conn: sa.Connection, account_id: uuid.UUID, entity_type: str, ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, list[str]]:
    t = schema.tags
    out: dict[uuid.UUID, list[str]] = {i: [] for i in ids}
    if ids:
        rows = conn.execute(
            sa.select(t.c.entity_id, t.c.tag).where(
                t.c.account_id == account_id, t.c.entity_type == entity_type, t.c.entity_id.in_(ids)
            )
        )
        for entity_id, tag in rows:
            out[entity_id].append(tag)
    return {k: sorted(v) for k, v in out.items()}


def _automations(conn: sa.Connection, account_id: uuid.UUID, names: Sequence[str]) -> dict[str, sa.Row]:
    a = schema.automations
    rows = conn.execute(sa.select(a).where(a.c.account_id == account_id, a.c.name.in_(list(names))))
    return {r.name: r for r in rows}


def _image(row: sa.Row, cols: Iterable[str]) -> dict[str, Any]:
    return {c: jsonable(getattr(row, c)) for c in cols}


class _Batch:
    """One batch of one job: evaluates records and, when applying, writes their changes."""

    def __init__(self, conn: sa.Connection, job: sa.Row, *, apply: bool, check_plan: bool, now: datetime) -> None:
        self.conn = conn
        self.job = job
        self.apply = apply
        self.check_plan = check_plan
        self.now = now
        self.account_id = job.account_id
        self.entity_type = job.entity_type
        self.table = schema.ENTITY_TABLES[job.entity_type]
        self.operation = job.operation
        self.params = job.params or {}
        self.actor = str(job.created_by) if job.created_by else "bulkops"

    def run(self, items: list[_Item]) -> list[Outcome]:
        op = self.operation
        if op == ROLLBACK:
            outcomes = self._rollback(items)
        elif op in ("tags_add", "tags_remove", "tags_set"):
            outcomes = self._tags(items)
        elif op == "trigger_automations":
            outcomes = self._trigger(items)
        elif op == "recollection":
            outcomes = self._recollection(items)
        elif op == "create":
            outcomes = self._contract_create(items)
        elif op == "delete" and self.params.get("hard"):
            outcomes = self._hard_delete(items)
        else:
            outcomes = self._set(items)
        return outcomes

    def _planned_mismatch(self, item: _Item, before: Any) -> str | None:
        if self.check_plan and item.planned != before:
            return f"changed since preview: planned {json.dumps(item.planned)}, now {json.dumps(before)}"
        return None

    def _set(self, items: list[_Item]) -> list[Outcome]:
        values = _set_spec(self.entity_type, self.operation, self.params, self.now)
        assert values is not None, self.operation
        cols = list(values)
        after = jsonable(values)
        records = _load_records(self.conn, self.table, self.account_id, [i.entity_id for i in items])
        outcomes, ok_ids = [], []
        for item in items:
            row = records.get(item.entity_id)
            if row is None:
                outcomes.append(Outcome(item.seq, item.entity_id, "failed", NOT_FOUND, before=item.planned))
                continue
            before = _image(row, cols)
            mismatch = self._planned_mismatch(item, before)
            if mismatch:
                outcomes.append(Outcome(item.seq, item.entity_id, "skipped", mismatch, before=item.planned))
                continue
            outcomes.append(
                Outcome(
                    item.seq,
                    item.entity_id,
                    "succeeded",
                    None,
                    before,
                    after,
                    [(self.entity_type, item.entity_id, before, after)],
                )
            )
            ok_ids.append(item.entity_id)
        if self.apply and ok_ids:
            self.conn.execute(
                self.table.update()
                .where(self.table.c.id.in_(ok_ids), self.table.c.account_id == self.account_id)
                .values(**values, updated_at=self.now)
            )
        return outcomes

    def _tags(self, items: list[_Item]) -> list[Outcome]:
        wanted = self.params["tags"]
        records = _load_records(self.conn, self.table, self.account_id, [i.entity_id for i in items])
        current = _load_tags(self.conn, self.account_id, self.entity_type, list(records))
        outcomes, to_add, to_remove = [], [], []
        for item in items:
            if item.entity_id not in records:
                outcomes.append(Outcome(item.seq, item.entity_id, "failed", NOT_FOUND, before=item.planned))
                continue
            have = current[item.entity_id]
            before = {"tags": have}
            mismatch = self._planned_mismatch(item, before)
            if mismatch:
                outcomes.append(Outcome(item.seq, item.entity_id, "skipped", mismatch, before=item.planned))
                continue
            if self.operation == "tags_add":
                new = sorted(set(have) | set(wanted))
            elif self.operation == "tags_remove":
                new = sorted(set(have) - set(wanted))
            else:
                new = sorted(set(wanted))
            after = {"tags": new}
            to_add += [(item.entity_id, t) for t in new if t not in have]
            to_remove += [(item.entity_id, t) for t in have if t not in new]
            outcomes.append(
                Outcome(
                    item.seq,
                    item.entity_id,
                    "succeeded",
                    None,
                    before,
                    after,
                    [(self.entity_type, item.entity_id, before, after)],
                )
            )
        if self.apply:
            self._write_tags(to_add, to_remove)
        return outcomes

    def _write_tags(self, to_add: list[tuple[uuid.UUID, str]], to_remove: list[tuple[uuid.UUID, str]]) -> None:
        t = schema.tags
        if to_remove:
            self.conn.execute(
                t.delete().where(
                    t.c.account_id == self.account_id,
                    t.c.entity_type == self.entity_type,
                    t.c.entity_id == sa.bindparam("b_id"),
                    t.c.tag == sa.bindparam("b_tag"),
                ),
                [{"b_id": i, "b_tag": tag} for i, tag in to_remove],
            )
        if to_add:
            self.conn.execute(
                t.insert(),
                [
                    {
                        "account_id": self.account_id,
                        "entity_type": self.entity_type,
                        "entity_id": i,
                        "tag": tag,
                        "created_at": self.now,
                    }
                    for i, tag in to_add
                ],
            )

    def _trigger(self, items: list[_Item]) -> list[Outcome]:
        names = self.params["automations"]
        rules = _automations(self.conn, self.account_id, names)
        missing = [n for n in names if n not in rules]
        records = _load_records(self.conn, self.table, self.account_id, [i.entity_id for i in items])
        moves = [rules[n] for n in names if n in rules and rules[n].action == "move_stage"]
        new_stage = moves[-1].config.get("stage") if moves else None
        refused = f"unknown automation: {', '.join(missing)}" if missing else None
        if new_stage is not None and refused is None:
            # the stage is checked when the job is created; the automation or the account's
            # stages may have changed since
            try:
                new_stage = declared_value(
                    self.entity_type, "stage", str(new_stage), accounts.settings(self.conn, self.account_id)
                )
            except ParamsError as exc:
                refused = (
                    f"automation {moves[-1].name!r}: {exc.details['value']!r} is not a stage of "
                    f"{self.entity_type} (allowed: {', '.join(exc.details['allowed'])})"
                )
        outcomes, events, moved = [], [], []
        for item in items:
            row = records.get(item.entity_id)
            if row is None:
                outcomes.append(Outcome(item.seq, item.entity_id, "failed", NOT_FOUND, before=item.planned))
                continue
            if refused:
                outcomes.append(Outcome(item.seq, item.entity_id, "failed", refused))
                continue
            before = {"stage": row.stage} if new_stage and "stage" in self.table.c else None
            mismatch = self._planned_mismatch(item, before)
            if mismatch:
                outcomes.append(Outcome(item.seq, item.entity_id, "skipped", mismatch, before=item.planned))
                continue
            event_ids = []
            for name in names:
                rule = rules[name]
                event_id = uuid.uuid4()
                event_ids.append(str(event_id))
                applied = rule.action == "move_stage"
                events.append(
                    {
                        "id": event_id,
                        "account_id": self.account_id,
                        "automation": name,
                        "action": rule.action,
                        "entity_type": self.entity_type,
                        "entity_id": item.entity_id,
                        "payload": {
                            "config": jsonable(rule.config),
                            "entity_type": self.entity_type,
                            "entity_id": str(item.entity_id),
                            "bulk_job_id": str(self.job.id),
                        },
                        "status": "delivered" if applied else "pending",
                        "attempts": 1 if applied else 0,
                        "bulk_job_id": self.job.id,
                        "created_at": self.now,
                        "delivered_at": self.now if applied else None,
                    }
                )
            after: dict[str, Any] = {"automations": list(names), "events": event_ids}
            if before is not None:
                after["stage"] = new_stage
                moved.append(item.entity_id)
            outcomes.append(
                Outcome(
                    item.seq,
                    item.entity_id,
                    "succeeded",
                    None,
                    before,
                    after,
                    [(self.entity_type, item.entity_id, before, after)],
                )
            )
        if self.apply:
            if events:
                self.conn.execute(schema.automation_events.insert(), events)
            if moved:
                self.conn.execute(
                    self.table.update()
                    .where(self.table.c.id.in_(moved), self.table.c.account_id == self.account_id)
                    .values(stage=new_stage, updated_at=self.now)
                )
        return outcomes

    def _recollection(self, items: list[_Item]) -> list[Outcome]:
        records = _load_records(self.conn, self.table, self.account_id, [i.entity_id for i in items])
        outcomes, requests, events = [], [], []
        for item in items:
            row = records.get(item.entity_id)
            if row is None:
                outcomes.append(Outcome(item.seq, item.entity_id, "failed", NOT_FOUND))
                continue
            request_id = uuid.uuid4()
            requests.append(
                {
                    "id": request_id,
                    "account_id": self.account_id,
                    "application_id": row.id,
                    "candidate_id": row.candidate_id,
                    "fields": self.params.get("fields", []),
                    "message": self.params.get("message"),
                    "status": "requested",
                    "bulk_job_id": self.job.id,
                    "created_at": self.now,
                    "updated_at": self.now,
                }
            )
            events.append(
                {
                    "id": uuid.uuid4(),
                    "account_id": self.account_id,
                    "automation": "recollection",
                    "action": "send_email",
                    "entity_type": "applications",
                    "entity_id": row.id,
                    "payload": {
                        "template": "recollection",
                        "recollection_request_id": str(request_id),
                        "candidate_id": str(row.candidate_id),
                        "fields": self.params.get("fields", []),
                        "message": self.params.get("message"),
                    },
                    "status": "pending",
                    "attempts": 0,
                    "bulk_job_id": self.job.id,
                    "created_at": self.now,
                }
            )
            after = {"recollection_request_id": str(request_id), "status": "requested"}
            outcomes.append(
                Outcome(
                    item.seq,
                    item.entity_id,
                    "succeeded",
                    None,
                    None,
                    after,
                    [(self.entity_type, item.entity_id, None, after)],
                )
            )
        if self.apply and requests:
            self.conn.execute(schema.recollection_requests.insert(), requests)
            self.conn.execute(schema.automation_events.insert(), events)
        return outcomes

    def _contract_create(self, items: list[_Item]) -> list[Outcome]:
        apps = schema.applications
        c = schema.contracts
        records = _load_records(self.conn, apps, self.account_id, [i.entity_id for i in items])
        existing = set()
        if records:
            existing = set(
                self.conn.scalars(
                    sa.select(c.c.application_id).where(
                        c.c.account_id == self.account_id,
                        c.c.application_id.in_(list(records)),
                        c.c.deleted_at.is_(None),
                    )
                )
            )
        outcomes, rows = [], []
        for item in items:
            app = records.get(item.entity_id)
            if app is None:
                outcomes.append(Outcome(item.seq, item.entity_id, "failed", "application " + NOT_FOUND))
                continue
            if app.stage not in HIRED_STAGES:
                outcomes.append(
                    Outcome(
                        item.seq,
                        item.entity_id,
                        "skipped",
                        f"application is in stage {app.stage!r}, not {' or '.join(HIRED_STAGES)}",
                    )
                )
                continue
            if app.id in existing:
                outcomes.append(Outcome(item.seq, item.entity_id, "skipped", "application already has a contract"))
                continue
            contract_id = uuid.uuid4()
            after = {
                "contract_id": str(contract_id),
                "template": self.params["template"],
                "status": self.params["status"],
                "terms": self.params["terms"],
            }
            rows.append(
                {
                    "id": contract_id,
                    "account_id": self.account_id,
                    "application_id": app.id,
                    "status": self.params["status"],
                    "template": self.params["template"],
                    "terms": self.params["terms"],
                    "created_at": self.now,
                    "updated_at": self.now,
                    "bulk_job_id": self.job.id,
                }
            )
            outcomes.append(
                Outcome(
                    item.seq, item.entity_id, "succeeded", None, None, after, [("contracts", contract_id, None, after)]
                )
            )
        if self.apply and rows:
            self.conn.execute(c.insert(), rows)
        return outcomes

    def _hard_delete(self, items: list[_Item]) -> list[Outcome]:
        records = _load_records(
            self.conn, self.table, self.account_id, [i.entity_id for i in items], include_deleted=True
        )
        blocked: dict[uuid.UUID, str] = {}
        for table, column in _HARD_DELETE_BLOCKERS[self.entity_type]:
            if records:
                for ref in self.conn.scalars(
                    sa.select(table.c[column]).where(table.c[column].in_(list(records))).distinct()
                ):
                    blocked.setdefault(ref, f"referenced by {table.name}")
        outcomes, ok = [], []
        for item in items:
            row = records.get(item.entity_id)
            if row is None:
                outcomes.append(Outcome(item.seq, item.entity_id, "failed", NOT_FOUND, before=item.planned))
                continue
            if item.entity_id in blocked:
                outcomes.append(
                    Outcome(item.seq, item.entity_id, "failed", f"cannot hard delete: {blocked[item.entity_id]}")
                )
                continue
            before = {k: jsonable(v) for k, v in row._mapping.items()}
            mismatch = self._planned_mismatch(item, before)
            if mismatch:
                outcomes.append(Outcome(item.seq, item.entity_id, "skipped", mismatch, before=item.planned))
                continue
            outcomes.append(
                Outcome(
                    item.seq,
                    item.entity_id,
                    "succeeded",
                    None,
                    before,
                    None,
                    [(self.entity_type, item.entity_id, before, None)],
                )
            )
            ok.append(item.entity_id)
        if self.apply and ok:
            t = schema.tags
            self.conn.execute(
                t.delete().where(
                    t.c.account_id == self.account_id, t.c.entity_type == self.entity_type, t.c.entity_id.in_(ok)
                )
            )
            self.conn.execute(
                self.table.delete().where(self.table.c.id.in_(ok), self.table.c.account_id == self.account_id)
            )
        return outcomes

    def _rollback(self, items: list[_Item]) -> list[Outcome]:
        original_id = uuid.UUID(str(self.params["rollback_of"]))
        original = self.conn.execute(sa.select(jobs_t).where(jobs_t.c.id == original_id)).one()
        op = original.operation
        ids = [i.entity_id for i in items]
        done = {
            r.entity_id: r
            for r in self.conn.execute(
                sa.select(items_t.c.entity_id, items_t.c.before, items_t.c.after).where(
                    # a literal, not a bind parameter: a generic plan must still match the partial index
                    items_t.c.bulk_job_id == original_id,
                    items_t.c.entity_id.in_(ids),
                    items_t.c.status == sa.literal_column("'succeeded'"),
                )
            )
        }
        if op in ("create", "recollection"):
            return self._rollback_created(items, op, done)
        include_deleted = op == "delete"
        records = _load_records(self.conn, self.table, self.account_id, ids, include_deleted=include_deleted)
        tags = _load_tags(self.conn, self.account_id, self.entity_type, list(records)) if op.startswith("tags_") else {}
        outcomes: list[Outcome] = []
        restores: dict[tuple, list[uuid.UUID]] = {}
        to_add, to_remove = [], []
        for item in items:
            row, orig = records.get(item.entity_id), done.get(item.entity_id)
            if row is None or orig is None:
                outcomes.append(Outcome(item.seq, item.entity_id, "failed", NOT_FOUND))
                continue
            now_image = {"tags": tags[item.entity_id]} if op.startswith("tags_") else _image(row, orig.after.keys())
            conflict = row.deleted_at is None if op == "delete" else now_image != orig.after
            if conflict:
                outcomes.append(
                    Outcome(
                        item.seq,
                        item.entity_id,
                        "skipped",
                        f"changed since the job: expected {json.dumps(orig.after)}, now {json.dumps(now_image)}",
                        before=now_image,
                    )
                )
                continue
            target = orig.before
            if op.startswith("tags_"):
                to_add += [(item.entity_id, t) for t in target["tags"] if t not in now_image["tags"]]
                to_remove += [(item.entity_id, t) for t in now_image["tags"] if t not in target["tags"]]
            else:
                key = tuple(sorted((k, json.dumps(v, sort_keys=True)) for k, v in target.items()))
                restores.setdefault(key, []).append(item.entity_id)
            outcomes.append(
                Outcome(
                    item.seq,
                    item.entity_id,
                    "succeeded",
                    None,
                    now_image,
                    target,
                    [(self.entity_type, item.entity_id, now_image, target)],
                )
            )
        if self.apply:
            self._write_tags(to_add, to_remove)
            for key, entity_ids in restores.items():
                values = {k: self._from_json(k, json.loads(v)) for k, v in key}
                self.conn.execute(
                    self.table.update()
                    .where(self.table.c.id.in_(entity_ids), self.table.c.account_id == self.account_id)
                    .values(**values, updated_at=self.now)
                )
        return outcomes

    def _from_json(self, column: str, value: Any) -> Any:
        if value is not None and isinstance(self.table.c[column].type, sa.DateTime):
            return datetime.fromisoformat(value)
        return value

    def _rollback_created(self, items: list[_Item], op: str, done: Mapping[uuid.UUID, sa.Row]) -> list[Outcome]:
        table = schema.contracts if op == "create" else schema.recollection_requests
        key = "contract_id" if op == "create" else "recollection_request_id"
        created = {uuid.UUID(r.after[key]): r for r in done.values()}
        rows = (
            {
                r.id: r
                for r in self.conn.execute(
                    sa.select(table).where(table.c.id.in_(list(created)), table.c.account_id == self.account_id)
                )
            }
            if created
            else {}
        )
        outcomes, undo = [], []
        for item in items:
            orig = done.get(item.entity_id)
            target_id = uuid.UUID(orig.after[key]) if orig else None
            row = rows.get(target_id) if target_id else None
            if row is None:
                outcomes.append(Outcome(item.seq, item.entity_id, "failed", NOT_FOUND))
                continue
            if op == "create":
                before, after, live = {"deleted_at": None}, {"deleted_at": jsonable(self.now)}, row.deleted_at is None
            else:
                before, after, live = {"status": row.status}, {"status": "cancelled"}, row.status == "requested"
            if not live:
                outcomes.append(Outcome(item.seq, item.entity_id, "skipped", f"already undone: {json.dumps(before)}"))
                continue
            audit_type = "contracts" if op == "create" else self.entity_type
            audit_id = row.id if op == "create" else item.entity_id
            outcomes.append(
                Outcome(
                    item.seq,
                    item.entity_id,
                    "succeeded",
                    None,
                    before,
                    after,
                    [(audit_type, audit_id, {key: str(row.id), **before}, {key: str(row.id), **after})],
                )
            )
            undo.append(row.id)
        if self.apply and undo:
            values = {"deleted_at": self.now} if op == "create" else {"status": "cancelled"}
            self.conn.execute(table.update().where(table.c.id.in_(undo)).values(**values, updated_at=self.now))
        return outcomes


def _write_outcomes(
    conn: sa.Connection, job: sa.Row, outcomes: list[Outcome], now: datetime, *, audit: bool, keep_pending: bool = False
) -> None:
    if not outcomes:
        return
    stmt = (
        items_t.update()
        .where(items_t.c.bulk_job_id == job.id, items_t.c.seq == sa.bindparam("b_seq"))
        .values(
            status=sa.bindparam("b_status"),
            error=sa.bindparam("b_error"),
            before=sa.bindparam("b_before"),
            after=sa.bindparam("b_after"),
            updated_at=now,
        )
    )
    conn.execute(
        stmt,
        [
            {
                "b_seq": o.seq,
                "b_status": "pending" if keep_pending else o.status,
                "b_error": o.error,
                "b_before": o.before,
                "b_after": o.after,
            }
            for o in outcomes
        ],
    )
    if audit:
        actor = str(job.created_by) if job.created_by else "bulkops"
        rows = [
            {
                "account_id": job.account_id,
                "occurred_at": now,
                "actor": actor,
                "operation": job.operation,
                "entity_type": et,
                "entity_id": eid,
                "bulk_job_id": job.id,
                "before": b,
                "after": a,
            }
            for o in outcomes
            if o.status == "succeeded"
            for et, eid, b, a in o.audit
        ]
        if rows:
            conn.execute(schema.audit_log.insert(), rows)


# One statement per batch. `rec` locks the batch's records in id order (concurrent jobs cannot
# deadlock) and reads their before-images from the locked, latest versions; the record update,
# the audit rows and the item outcomes are all written from that one pass. Tables are reached
# through `id = ANY(ARRAY(...))`, a primary-key lookup per id: a join let the planner hash the
# whole table per batch, so each batch cost grew with the table, not the batch.
_PG_SET_BATCH = """
WITH it AS (
    SELECT seq, entity_id, before AS planned FROM bulk_job_items
    WHERE bulk_job_id = :job AND seq >= :lo AND seq < :hi
),
rec AS (
    SELECT t.id, jsonb_build_object({before_pairs}) AS before FROM {table} t
    WHERE t.id = ANY(ARRAY(SELECT entity_id FROM it)) AND t.account_id = :acct AND t.deleted_at IS NULL
    ORDER BY t.id FOR UPDATE OF t
),
dec AS (
    SELECT it.seq, it.planned, rec.id, rec.before,
           (rec.id IS NOT NULL AND (NOT :check_plan OR rec.before = it.planned)) AS ok
    FROM it LEFT JOIN rec ON rec.id = it.entity_id
),
upd AS (
    UPDATE {table} t SET {set_clause}, updated_at = :now
    WHERE t.id = ANY(ARRAY(SELECT id FROM dec WHERE ok))
),
aud AS (
    INSERT INTO audit_log (account_id, occurred_at, actor, operation, entity_type, entity_id, bulk_job_id, before, after)
    SELECT :acct, :now, :actor, :op, :etype, dec.id, :job, dec.before, CAST(:after AS jsonb) FROM dec WHERE dec.ok
    ORDER BY dec.seq
),
itm AS (
    UPDATE bulk_job_items bi SET
        status = CASE WHEN dec.ok THEN 'succeeded' WHEN dec.id IS NULL THEN 'failed' ELSE 'skipped' END,
        error = CASE WHEN dec.ok THEN NULL WHEN dec.id IS NULL THEN 'not found'
                ELSE 'changed since preview: planned ' || coalesce(dec.planned::text, 'null') || ', now ' || dec.before::text END,
        before = CASE WHEN dec.ok THEN dec.before ELSE bi.before END,
        after = CASE WHEN dec.ok THEN CAST(:after AS jsonb) END,
        updated_at = :now
    FROM dec WHERE bi.bulk_job_id = :job AND bi.seq >= :lo AND bi.seq < :hi AND bi.seq = dec.seq
    RETURNING bi.status
)
SELECT count(*) FILTER (WHERE status = 'succeeded'), count(*) FILTER (WHERE status = 'failed'),
       count(*) FILTER (WHERE status = 'skipped')
FROM itm
"""


def _pg_set_batch(
    conn: sa.Connection, job: sa.Row, lo: int, hi: int, *, check_plan: bool, now: datetime
) -> tuple[int, int, int]:
    # items in [next_seq, total) are pending by construction: no status filter, the PK range is the plan
    values = _set_spec(job.entity_type, job.operation, job.params or {}, now)
    assert values is not None
    table = schema.ENTITY_TABLES[job.entity_type]
    before_pairs = ", ".join(f"'{c}', t.{c}" for c in values)
    set_clause = ", ".join(f"{c} = :v_{c}" for c in values)
    sql = sa.text(_PG_SET_BATCH.format(table=table.name, before_pairs=before_pairs, set_clause=set_clause))
    sql = sql.bindparams(*(sa.bindparam(f"v_{c}", type_=table.c[c].type) for c in values))
    row = conn.execute(
        sql,
        {
            "job": job.id,
            "lo": lo,
            "hi": hi,
            "acct": job.account_id,
            "check_plan": check_plan,
            "now": now,
            "actor": str(job.created_by) if job.created_by else "bulkops",
            "op": job.operation,
            "etype": job.entity_type,
            "after": json.dumps(jsonable(values)),
            **{f"v_{c}": v for c, v in values.items()},
        },
    ).one()
    return int(row[0]), int(row[1]), int(row[2])


def _pending_items(conn: sa.Connection, job_id: uuid.UUID, lo: int, hi: int) -> list[_Item]:
    # status is checked here, not in SQL: a status predicate lures the planner onto the
    # (bulk_job_id, status) index, which scans every pending item of the job per batch
    stmt = (
        sa.select(items_t.c.seq, items_t.c.entity_id, items_t.c.before, items_t.c.status)
        .where(items_t.c.bulk_job_id == job_id, items_t.c.seq >= lo, items_t.c.seq < hi)
        .order_by(items_t.c.seq)
    )
    return [_Item(r.seq, r.entity_id, r.before) for r in conn.execute(stmt) if r.status == "pending"]


def _uses_pg_fast_path(conn: sa.Connection, job: sa.Row) -> bool:
    return (
        conn.dialect.name == "postgresql"
        and job.operation != ROLLBACK
        and _set_spec(job.entity_type, job.operation, job.params or {}, utcnow()) is not None
    )


def _apply_batch(conn: sa.Connection, job: sa.Row, lo: int, hi: int, now: datetime) -> tuple[int, int, int]:
    check_plan = job.plan_id is not None
    if _uses_pg_fast_path(conn, job):
        return _pg_set_batch(conn, job, lo, hi, check_plan=check_plan, now=now)
    items = _pending_items(conn, job.id, lo, hi)
    outcomes = _Batch(conn, job, apply=True, check_plan=check_plan, now=now).run(items)
    _write_outcomes(conn, job, outcomes, now, audit=True)
    return _count(outcomes)


def _apply_batch_isolated(conn: sa.Connection, job: sa.Row, lo: int, hi: int, now: datetime) -> tuple[int, int, int]:
    # a database error on one record (constraint, bad value) must not sink its batch: retry one by one
    check_plan = job.plan_id is not None
    totals = [0, 0, 0]
    for item in _pending_items(conn, job.id, lo, hi):
        try:
            with conn.begin_nested():
                outcomes = _Batch(conn, job, apply=True, check_plan=check_plan, now=now).run([item])
                _write_outcomes(conn, job, outcomes, now, audit=True)
        except sa.exc.DBAPIError as exc:
            if _is_transient(exc):
                raise
            outcomes = [Outcome(item.seq, item.entity_id, "failed", _db_error_text(exc), before=item.planned)]
            _write_outcomes(conn, job, outcomes, now, audit=False)
        for i, n in enumerate(_count(outcomes)):
            totals[i] += n
    return totals[0], totals[1], totals[2]


def _db_error_text(exc: sa.exc.DBAPIError) -> str:
    text = str(exc.orig).strip().splitlines()[0] if exc.orig is not None else str(exc)
    return text[:500]


def _count(outcomes: Iterable[Outcome]) -> tuple[int, int, int]:
    s = f = k = 0
    for o in outcomes:
        if o.status == "succeeded":
            s += 1
        elif o.status == "failed":
            f += 1
        else:
            k += 1
    return s, f, k


def _lock_job(conn: sa.Connection, job_id: uuid.UUID) -> sa.Row:
    stmt = sa.select(jobs_t).where(jobs_t.c.id == job_id)
    if conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    else:
        # a write first: pysqlite then opens a real transaction (a bare SAVEPOINT would commit on
        # release) and takes the database write lock, sqlite's FOR UPDATE
        conn.execute(jobs_t.update().where(jobs_t.c.id == job_id).values(id=jobs_t.c.id))
    job = conn.execute(stmt).one_or_none()
    if job is None:
        raise JobGone(f"bulk job {job_id} does not exist")
    return job


def load_items(conn: sa.Connection, job_id: uuid.UUID, entity_ids: Sequence[uuid.UUID | str]) -> None:
    """Write one pending item per entity id, numbered from 0.

    The ids are already de-duplicated and valid: uuid.UUID objects or canonical uuid strings.
    PostgreSQL gets them in one COPY (a million in a few seconds); others use executemany.
    """
    if conn.dialect.name == "postgresql":
        job = str(job_id)
        chunk = 100_000
        cursor = conn.connection.driver_connection.cursor()
        with cursor.copy("COPY bulk_job_items (bulk_job_id, seq, entity_id, status) FROM STDIN") as copy:
            for start in range(0, len(entity_ids), chunk):
                copy.write(
                    "".join(
                        f"{job}\t{seq}\t{eid}\tpending\n"
                        for seq, eid in enumerate(entity_ids[start : start + chunk], start)
                    )
                )
        cursor.close()
        if len(entity_ids) >= ANALYZE_THRESHOLD:
            # fresh statistics, or the planner takes a million new items for a handful and
            # joins each batch by nested loops over the whole job
            conn.execute(sa.text("ANALYZE bulk_job_items"))
        return
    chunk = 5000
    for start in range(0, len(entity_ids), chunk):
        conn.execute(
            items_t.insert(),
            [
                {
                    "bulk_job_id": job_id,
                    "seq": start + n,
                    "entity_id": eid if isinstance(eid, uuid.UUID) else uuid.UUID(eid),
                    "status": "pending",
                }
                for n, eid in enumerate(entity_ids[start : start + chunk])
            ],
        )


def start_job(store: RecordStore, job_id: uuid.UUID, run_id: str | None = None) -> sa.Row | None:
    """Move a job to processing for a run; None when it is finished or waits for a confirm."""
    now = utcnow()
    with store.begin() as conn:
        job = _lock_job(conn, job_id)
        if job.status in ("completed", "cancelled"):
            return None
        if job.mode == "preview":
            return None
        if job.status == "pending" and job.cancel_requested_at is not None:
            return None
        values: dict[str, Any] = {"status": "processing", "updated_at": now, "error_message": None}
        if run_id:
            values["dagster_run_id"] = run_id
        if job.started_at is None:
            values["started_at"] = now
        conn.execute(jobs_t.update().where(jobs_t.c.id == job_id).values(**values))
        return conn.execute(sa.select(jobs_t).where(jobs_t.c.id == job_id)).one()


def process_next_batch(
    store: RecordStore, job_id: uuid.UUID, batch_size: int, *, batch_number: int = 0, run_id: str | None = None
) -> BatchResult | None:
    """Apply the next batch in one transaction; None when the job is not processing (any more)."""
    now = utcnow()
    with store.begin() as conn:
        job = _lock_job(conn, job_id)
        if job.status != "processing" or (run_id and job.dagster_run_id and job.dagster_run_id != run_id):
            return None
        if job.cancel_requested_at is not None:
            conn.execute(
                jobs_t.update().where(jobs_t.c.id == job_id).values(status="cancelled", finished_at=now, updated_at=now)
            )
            return BatchResult(
                job.next_seq, job.next_seq, 0, 0, 0, "cancelled", job.processed_count, job.failed_count, job.total_count
            )
        lo = job.next_seq
        hi = min(lo + batch_size, job.total_count)
        if conn.dialect.name == "postgresql" and hi < job.total_count:
            # no wait for the WAL flush: a crash can lose the last batches committed, but each
            # batch commits with its own counters and next_seq, so they are lost whole and the
            # next run redoes them. The batch that completes the job commits synchronously.
            conn.execute(sa.text("SET LOCAL synchronous_commit = off"))
        s = f = k = 0
        if lo < hi:
            if job.mode == "dry_run":
                items = _pending_items(conn, job.id, lo, hi)
                outcomes = _Batch(conn, job, apply=False, check_plan=False, now=now).run(items)
                _write_outcomes(conn, job, outcomes, now, audit=False)
                s, f, k = _count(outcomes)
            else:
                try:
                    with conn.begin_nested():
                        s, f, k = _apply_batch(conn, job, lo, hi, now)
                except (sa.exc.IntegrityError, sa.exc.DataError) as exc:
                    if _is_transient(exc):
                        raise
                    s, f, k = _apply_batch_isolated(conn, job, lo, hi, now)
        status = "completed" if hi >= job.total_count else "processing"
        values: dict[str, Any] = {
            "next_seq": hi,
            "processed_count": job.processed_count + s + f + k,
            "failed_count": job.failed_count + f,
            "skipped_count": job.skipped_count + k,
            "status": status,
            "updated_at": now,
        }
        if status == "completed":
            values["finished_at"] = now
            if values["failed_count"]:
                values.update(_failure_outcome(conn, job, values["failed_count"]))
                status = values["status"]
        conn.execute(jobs_t.update().where(jobs_t.c.id == job_id).values(**values))
        if fault_hook is not None:
            fault_hook("before_commit", batch_number)
    if fault_hook is not None:
        fault_hook("after_commit", batch_number)
    return BatchResult(lo, hi, s, f, k, status, values["processed_count"], values["failed_count"], job.total_count)


FAILURE_REASONS_SHOWN = 5


def failure_reasons(
    conn: sa.Connection, job_id: uuid.UUID, limit: int = FAILURE_REASONS_SHOWN
) -> list[tuple[str, int]]:
    """The most frequent errors of a job's failed items, most frequent first: [(error, count)]."""
    n = sa.func.count().label("n")
    stmt = (
        sa.select(items_t.c.error, n)
        .where(items_t.c.bulk_job_id == job_id, items_t.c.status == "failed")
        .group_by(items_t.c.error)
        .order_by(n.desc(), items_t.c.error)
        .limit(limit)
    )
    return [(error or "unknown error", int(count)) for error, count in conn.execute(stmt)]


def _failure_outcome(conn: sa.Connection, job: sa.Row, failed_count: int) -> dict[str, Any]:
    """How a job with failed records ends: `failed` when every record failed, else `completed`.

    Either way `summary.failed_reasons` lists the most frequent errors with their counts; a
    failed job also says them in `error_message`. A completed job's `error_message` stays empty:
    it names a job-level failure, and per-record failures are `failed_count`.
    """
    reasons = failure_reasons(conn, job.id)
    other = failed_count - sum(n for _, n in reasons)
    summary = dict(job.summary or {})
    summary["failed_reasons"] = [{"error": e, "count": n} for e, n in reasons]
    if other:
        summary["failed_reasons"].append({"error": "other reasons", "count": other})
    out: dict[str, Any] = {"summary": summary}
    if failed_count >= job.total_count:
        listed = ", ".join(f"{_short(e)} ({n})" for e, n in reasons)
        if other:
            listed += f", other reasons ({other})"
        out.update(status="failed", error_message=f"all {failed_count} records failed: {listed}")
    return out


def _short(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def finish_job(
    store: RecordStore,
    job_id: uuid.UUID,
    status: str,
    *,
    error: str | None = None,
    only_if: Sequence[str] = ("processing",),
    run_id: str | None = None,
) -> bool:
    """Set a terminal status unless the job already left `only_if`; True when it changed."""
    now = utcnow()
    with store.begin() as conn:
        stmt = jobs_t.update().where(jobs_t.c.id == job_id, jobs_t.c.status.in_(list(only_if)))
        if run_id is not None:
            stmt = stmt.where(jobs_t.c.dagster_run_id == run_id)
        values: dict[str, Any] = {"status": status, "updated_at": now, "finished_at": now}
        if error is not None:
            values["error_message"] = error[:4000]
        return conn.execute(stmt.values(**values)).rowcount > 0


def plan_job(store: RecordStore, job_id: uuid.UUID, *, batch_size: int = 2000) -> str:
    """Evaluate every item without writing records; store before/after on the items and a new plan id."""
    with store.begin() as conn:
        job = _lock_job(conn, job_id)
    now = utcnow()
    counts = {"changes": 0, "not_found": 0, "failed": 0, "skipped": 0}
    for lo in range(0, job.total_count, batch_size):
        with store.begin() as conn:
            items = [_Item(i.seq, i.entity_id, None) for i in _pending_items(conn, job_id, lo, lo + batch_size)]
            outcomes = _Batch(conn, job, apply=False, check_plan=False, now=now).run(items)
            _write_outcomes(conn, job, outcomes, now, audit=False, keep_pending=True)
        for o in outcomes:
            if o.status == "succeeded":
                counts["changes"] += 1
            elif o.error == NOT_FOUND or (o.error or "").endswith(NOT_FOUND):
                counts["not_found"] += 1
            elif o.status == "failed":
                counts["failed"] += 1
            else:
                counts["skipped"] += 1
    plan_id = uuid.uuid4().hex
    with store.begin() as conn:
        summary = dict(job.summary or {})
        summary["plan"] = counts
        conn.execute(
            jobs_t.update()
            .where(jobs_t.c.id == job_id)
            .values(plan_id=plan_id, planned_at=utcnow(), summary=summary, updated_at=utcnow())
        )
    return plan_id


def run_job(
    store: RecordStore,
    job_id: uuid.UUID,
    *,
    batch_size: int | None = None,
    run_id: str | None = None,
    on_batch: Callable[[BatchResult], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    transient_retries: int = 3,
) -> str | None:
    """Process a job to its end outside Dagster (tests, CLI); returns its final status."""
    if start_job(store, job_id, run_id) is None:
        return None
    size = batch_size or DEFAULT_BATCH_SIZE.get(store.dialect, 1000)
    number = 0
    while True:
        if should_stop is not None and should_stop():
            finish_job(store, job_id, "cancelled")
            return "cancelled"
        attempt = 0
        while True:
            try:
                result = process_next_batch(store, job_id, size, batch_number=number, run_id=run_id)
                break
            except sa.exc.DBAPIError as exc:
                attempt += 1
                if not _is_transient(exc) or attempt > transient_retries:
                    raise
                time.sleep(min(30.0, 0.5 * 2 ** (attempt - 1)))
        number += 1
        if result is None:
            with store.begin() as conn:
                return conn.scalar(sa.select(jobs_t.c.status).where(jobs_t.c.id == job_id))
        if on_batch is not None:
            on_batch(result)
        if result.job_status != "processing":
            return result.job_status
