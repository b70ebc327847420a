"""Tables of the record store: the platform's records and the tracking tables of bulk work.

Every platform table carries `account_id`; every read and write path filters on it. Types are
portable: native UUID/JSONB/uuid[] on PostgreSQL, CHAR(32)/JSON text on SQLite.
"""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class UuidList(sa.types.TypeDecorator):
    """A list of UUIDs: native uuid[] on PostgreSQL, a JSON array of strings elsewhere."""

    impl = sa.JSON
    cache_ok = True

    def load_dialect_impl(self, dialect: sa.Dialect) -> sa.types.TypeEngine:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(postgresql.ARRAY(sa.Uuid()))
        return dialect.type_descriptor(sa.JSON())

    def process_bind_param(self, value, dialect):  # type: ignore[no-untyped-def]
        if value is None or dialect.name == "postgresql":
            return value
        return [str(v) for v in value]

    def process_result_value(self, value, dialect):  # type: ignore[no-untyped-def]
        if value is None:
            return None
        return [v if isinstance(v, uuid.UUID) else uuid.UUID(str(v)) for v in value]


JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
UUID_LIST = UuidList()
TS = sa.DateTime(timezone=True)

USER_ROLES = ("candidate", "recruiter", "admin")
JOB_ORIGINS = ("uploaded", "public")
BULK_JOB_STATUSES = ("pending", "processing", "completed", "failed", "cancelled")
BULK_JOB_MODES = ("execute", "preview", "dry_run")
ITEM_STATUSES = ("pending", "succeeded", "failed", "skipped")
IMPORT_STATUSES = ("pending", "processing", "completed", "failed", "cancelled", "rolled_back", "skipped")
# what backs a change set: a row of import_history, bulk_jobs or sync_runs with the same id, or
# (rollback of an import, document import) nothing but the change set itself
CHANGE_SET_KINDS = ("import", "bulk_job", "sync", "document_import", "rollback")
BACKED_KINDS = {"import": "import_history", "bulk_job": "bulk_jobs", "sync": "sync_runs"}


def _now() -> sa.ColumnElement:
    return sa.func.current_timestamp()


def _id() -> sa.Column:
    return sa.Column("id", sa.Uuid(), primary_key=True)


def _account() -> sa.Column:
    return sa.Column("account_id", sa.Uuid(), sa.ForeignKey("accounts.id"), nullable=False)


def _timestamps() -> list[sa.Column]:
    return [
        sa.Column("created_at", TS, nullable=False, server_default=_now()),
        sa.Column("updated_at", TS, nullable=False, server_default=_now()),
    ]


def _provenance() -> list[sa.Column]:
    # which import or bulk job created the record (audit_log holds every later change)
    return [
        sa.Column("import_id", sa.Uuid(), nullable=True),
        sa.Column("bulk_job_id", sa.Uuid(), nullable=True),
    ]


def _folded_index(table: str, column: str) -> sa.Index:
    # match keys compare without case: lookups probe lower(key) (migration 0008)
    return sa.Index(f"ix_{table}_account_id_lower_{column}", "account_id", sa.text(f"lower({column})"))


def _enum_check(column: str, values: tuple[str, ...]) -> sa.CheckConstraint:
    quoted = ", ".join(f"'{v}'" for v in values)
    return sa.CheckConstraint(f"{column} IN ({quoted})", name=f"{column}_values")


accounts = sa.Table(
    "accounts",
    metadata,
    _id(),
    sa.Column("slug", sa.String(64), nullable=False, unique=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("created_at", TS, nullable=False, server_default=_now()),
    # per-account configuration: {"value_sets": {"applications.stage": [...]}} (migration 0007)
    sa.Column("settings", JSON, nullable=False, server_default="{}"),
)

api_tokens = sa.Table(
    "api_tokens",
    metadata,
    _id(),
    _account(),
    sa.Column("user_id", sa.Uuid(), sa.ForeignKey("users.id"), nullable=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("token_sha256", sa.String(64), nullable=False, unique=True),
    sa.Column("created_at", TS, nullable=False, server_default=_now()),
    sa.Column("revoked_at", TS, nullable=True),
)

users = sa.Table(
    "users",
    metadata,
    _id(),
    _account(),
    sa.Column("role", sa.String(16), nullable=False, server_default="candidate"),
    sa.Column("email", sa.String(320), nullable=True),
    # lower-cased, whitespace-stripped email: the duplicate-detection key
    sa.Column("email_normalized", sa.String(320), nullable=True),
    sa.Column("first_name", sa.String(200), nullable=True),
    sa.Column("last_name", sa.String(200), nullable=True),
    sa.Column("phone", sa.String(64), nullable=True),
    sa.Column("external_id", sa.String(200), nullable=True),
    sa.Column("data", JSON, nullable=False, server_default="{}"),
    *_timestamps(),
    sa.Column("deleted_at", TS, nullable=True),
    *_provenance(),
    _enum_check("role", USER_ROLES),
    sa.UniqueConstraint("account_id", "email_normalized"),
    _folded_index("users", "external_id"),
)

jobs = sa.Table(
    "jobs",
    metadata,
    _id(),
    _account(),
    sa.Column("code", sa.String(200), nullable=True),
    sa.Column("title", sa.String(500), nullable=False),
    sa.Column("description", sa.Text(), nullable=True),
    sa.Column("location", sa.String(500), nullable=True),
    sa.Column("status", sa.String(32), nullable=False, server_default="open"),
    sa.Column("origin", sa.String(16), nullable=False, server_default="uploaded"),
    sa.Column("source_url", sa.Text(), nullable=True),
    sa.Column("external_id", sa.String(200), nullable=True),
    sa.Column("data", JSON, nullable=False, server_default="{}"),
    *_timestamps(),
    sa.Column("deleted_at", TS, nullable=True),
    *_provenance(),
    _enum_check("origin", JOB_ORIGINS),
    # exact: an account may hold codes that differ only in case from before keys were folded
    sa.UniqueConstraint("account_id", "code"),
    _folded_index("jobs", "code"),
    _folded_index("jobs", "external_id"),
)

applications = sa.Table(
    "applications",
    metadata,
    _id(),
    _account(),
    sa.Column("candidate_id", sa.Uuid(), sa.ForeignKey("users.id"), nullable=False),
    sa.Column("job_id", sa.Uuid(), sa.ForeignKey("jobs.id"), nullable=True),
    sa.Column("stage", sa.String(64), nullable=False, server_default="applied"),
    sa.Column("status", sa.String(32), nullable=False, server_default="active"),
    sa.Column("source", sa.String(200), nullable=True),
    sa.Column("applied_at", TS, nullable=True),
    sa.Column("external_id", sa.String(200), nullable=True),
    sa.Column("data", JSON, nullable=False, server_default="{}"),
    *_timestamps(),
    sa.Column("deleted_at", TS, nullable=True),
    *_provenance(),
    _folded_index("applications", "external_id"),
    # lead with the referencing column: deleting a user or a job checks it per row (migration 0006)
    sa.Index(None, "candidate_id", "job_id"),
    sa.Index(None, "job_id"),
    sa.Index(None, "account_id", "stage"),
)

form_submissions = sa.Table(
    "form_submissions",
    metadata,
    _id(),
    _account(),
    sa.Column("application_id", sa.Uuid(), sa.ForeignKey("applications.id"), nullable=False),
    sa.Column("form_name", sa.String(200), nullable=False),
    sa.Column("answers", JSON, nullable=False, server_default="{}"),
    sa.Column("submitted_at", TS, nullable=True),
    *_timestamps(),
    *_provenance(),
    sa.Index(None, "application_id"),
)

contracts = sa.Table(
    "contracts",
    metadata,
    _id(),
    _account(),
    sa.Column("application_id", sa.Uuid(), sa.ForeignKey("applications.id"), nullable=True),
    sa.Column("status", sa.String(32), nullable=False, server_default="draft"),
    sa.Column("template", sa.String(200), nullable=True),
    sa.Column("terms", JSON, nullable=False, server_default="{}"),
    sa.Column("external_id", sa.String(200), nullable=True),
    sa.Column("data", JSON, nullable=False, server_default="{}"),
    *_timestamps(),
    sa.Column("deleted_at", TS, nullable=True),
    *_provenance(),
    sa.Index(None, "application_id"),
    _folded_index("contracts", "external_id"),
)

tags = sa.Table(
    "tags",
    metadata,
    _account(),
    sa.Column("entity_type", sa.String(32), nullable=False),
    sa.Column("entity_id", sa.Uuid(), nullable=False),
    sa.Column("tag", sa.String(200), nullable=False),
    sa.Column("created_at", TS, nullable=False, server_default=_now()),
    sa.PrimaryKeyConstraint("account_id", "entity_type", "entity_id", "tag"),
)

automations = sa.Table(
    "automations",
    metadata,
    _id(),
    _account(),
    sa.Column("name", sa.String(200), nullable=False),
    # send_email | move_stage | webhook
    sa.Column("action", sa.String(32), nullable=False),
    sa.Column("config", JSON, nullable=False, server_default="{}"),
    sa.Column("created_at", TS, nullable=False, server_default=_now()),
    sa.UniqueConstraint("account_id", "name"),
)

automation_events = sa.Table(
    "automation_events",
    metadata,
    _id(),
    _account(),
    sa.Column("automation", sa.String(200), nullable=False),
    sa.Column("action", sa.String(32), nullable=False),
    sa.Column("entity_type", sa.String(32), nullable=False),
    sa.Column("entity_id", sa.Uuid(), nullable=False),
    sa.Column("payload", JSON, nullable=False, server_default="{}"),
    # pending | delivered | failed
    sa.Column("status", sa.String(16), nullable=False, server_default="pending"),
    sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("last_error", sa.Text(), nullable=True),
    sa.Column("bulk_job_id", sa.Uuid(), nullable=True),
    sa.Column("created_at", TS, nullable=False, server_default=_now()),
    sa.Column("delivered_at", TS, nullable=True),
    # the outbox drain (migration 0012): when a retry is due, and which drain holds the row
    sa.Column("next_attempt_at", TS, nullable=True),
    sa.Column("claimed_at", TS, nullable=True),
    sa.Column("claim_token", sa.String(32), nullable=True),
    sa.Index(None, "status", "created_at"),
)

recollection_requests = sa.Table(
    "recollection_requests",
    metadata,
    _id(),
    _account(),
    sa.Column("application_id", sa.Uuid(), sa.ForeignKey("applications.id"), nullable=False),
    sa.Column("candidate_id", sa.Uuid(), sa.ForeignKey("users.id"), nullable=False),
    sa.Column("fields", JSON, nullable=False, server_default="[]"),
    sa.Column("message", sa.Text(), nullable=True),
    # requested | completed | cancelled
    sa.Column("status", sa.String(16), nullable=False, server_default="requested"),
    sa.Column("bulk_job_id", sa.Uuid(), nullable=True),
    *_timestamps(),
    sa.Index(None, "application_id"),
    sa.Index(None, "candidate_id"),
)

skills = sa.Table(
    "skills",
    metadata,
    _id(),
    sa.Column("name", sa.String(300), nullable=False),
    sa.Column("name_normalized", sa.String(300), nullable=False, unique=True),
    sa.Column("source", sa.String(64), nullable=True),
    sa.Column("uri", sa.Text(), nullable=True),
)

# the original files of document imports, stored by content hash (settings.documents_dir()),
# one row per file and kind; a newer file of the same applicant or job is its next version
DOCUMENT_KINDS = ("resume", "job_description")
DOCUMENT_STATUSES = ("pending", "processing", "completed", "failed")
documents = sa.Table(
    "documents",
    metadata,
    _id(),
    _account(),
    sa.Column("content_sha256", sa.String(64), nullable=False),
    sa.Column("filename", sa.String(500), nullable=True),
    sa.Column("size_bytes", sa.BigInteger(), nullable=False),
    sa.Column("media_type", sa.String(100), nullable=True),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("candidate_id", sa.Uuid(), sa.ForeignKey("users.id"), nullable=True),
    sa.Column("job_id", sa.Uuid(), sa.ForeignKey("jobs.id"), nullable=True),
    # 1, 2, ... per applicant or job
    sa.Column("version", sa.Integer(), nullable=False, server_default="1"),
    sa.Column("source_url", sa.Text(), nullable=True),
    sa.Column("storage_path", sa.Text(), nullable=True),
    sa.Column("pages", sa.Integer(), nullable=True),
    sa.Column("ocr_pages", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("text", sa.Text(), nullable=True),
    # the skills-extraction task of the document (its Dagster partition)
    sa.Column("status", sa.String(16), nullable=False, server_default="pending"),
    sa.Column("error_kind", sa.String(32), nullable=True),
    sa.Column("error_message", sa.Text(), nullable=True),
    sa.Column("partition_key", sa.String(500), nullable=True),
    sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
    # provenance: the document import (change set) that stored it
    sa.Column("import_id", sa.Uuid(), nullable=True),
    *_timestamps(),
    _enum_check("kind", DOCUMENT_KINDS),
    _enum_check("status", DOCUMENT_STATUSES),
    sa.UniqueConstraint("account_id", "kind", "content_sha256"),
    sa.Index(None, "candidate_id"),
    sa.Index(None, "job_id"),
)


def _skill_links(name: str, owner: str, owner_table: str) -> sa.Table:
    """candidate_skills / job_skills: one row per skill found in one document, with its evidence."""
    return sa.Table(
        name,
        metadata,
        _id(),
        _account(),
        sa.Column(owner, sa.Uuid(), sa.ForeignKey(f"{owner_table}.id"), nullable=False),
        sa.Column("skill_id", sa.Uuid(), sa.ForeignKey("skills.id"), nullable=False),
        sa.Column("document_id", sa.Uuid(), sa.ForeignKey("documents.id"), nullable=False),
        # evidence: the first place the skill is named (page from 1, character span on that page)
        sa.Column("page", sa.Integer(), nullable=False),
        sa.Column("span_start", sa.Integer(), nullable=False),
        sa.Column("span_end", sa.Integer(), nullable=False),
        sa.Column("evidence", sa.String(500), nullable=False),
        sa.Column("mentions", sa.Integer(), nullable=False, server_default="1"),
        sa.Column("import_id", sa.Uuid(), nullable=True),
        sa.Column("created_at", TS, nullable=False, server_default=_now()),
        sa.UniqueConstraint("document_id", "skill_id"),
        sa.Index(None, owner),
    )


candidate_skills = _skill_links("candidate_skills", "candidate_id", "users")
job_skills = _skill_links("job_skills", "job_id", "jobs")


def _change_set_id() -> sa.Column:
    # a capability row shares its id with its change set (migration 0009)
    return sa.Column("id", sa.Uuid(), sa.ForeignKey("change_sets.id"), primary_key=True)


change_sets = sa.Table(
    "change_sets",
    metadata,
    # every write to records happens inside one: docs/change-sets.md
    _id(),
    _account(),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("opened_at", TS, nullable=False, server_default=_now()),
    sa.Column("rollback_of", sa.Uuid(), sa.ForeignKey("change_sets.id"), nullable=True),
    # only for kinds no capability table backs (a rollback of an import, a document import); a
    # backed change set keeps them in its row of import_history / bulk_jobs / sync_runs, once
    sa.Column("actor", sa.String(200), nullable=True),
    sa.Column("dagster_run_id", sa.String(64), nullable=True),
    sa.Column("status", sa.String(16), nullable=True),
    sa.Column("counts", JSON, nullable=True),
    sa.Column("finished_at", TS, nullable=True),
    _enum_check("kind", CHANGE_SET_KINDS),
    sa.CheckConstraint(
        "kind NOT IN ('import', 'bulk_job', 'sync') OR (actor IS NULL AND dagster_run_id IS NULL "
        "AND status IS NULL AND counts IS NULL AND finished_at IS NULL)",
        name="backed_fields_once",
    ),
    sa.Index(None, "account_id", "opened_at"),
    sa.Index(None, "rollback_of"),
)

bulk_jobs = sa.Table(
    "bulk_jobs",
    metadata,
    # the API's bulk job object, field for field
    _change_set_id(),
    _account(),
    sa.Column("created_by", sa.Uuid(), nullable=True),
    sa.Column("entity_type", sa.String(32), nullable=False),
    sa.Column("operation", sa.String(64), nullable=False),
    # no longer written (new jobs store []): the ids live once, in bulk_job_items by seq
    sa.Column("entity_ids", UUID_LIST, nullable=False),
    sa.Column("params", JSON, nullable=False, server_default="{}"),
    sa.Column("status", sa.String(16), nullable=False, server_default="pending"),
    sa.Column("total_count", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("processed_count", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("failed_count", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("error_message", sa.Text(), nullable=True),
    *_timestamps(),
    # ours
    sa.Column("dagster_run_id", sa.String(64), nullable=True),
    # execute | preview (waits for confirm with plan_id) | dry_run (reports, writes no record)
    sa.Column("mode", sa.String(16), nullable=False, server_default="execute"),
    sa.Column("plan_id", sa.String(64), nullable=True),
    sa.Column("planned_at", TS, nullable=True),
    sa.Column("confirmed_at", TS, nullable=True),
    sa.Column("cancel_requested_at", TS, nullable=True),
    sa.Column("started_at", TS, nullable=True),
    sa.Column("finished_at", TS, nullable=True),
    # items [0, next_seq) are committed: a resumed run starts there
    sa.Column("next_seq", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("skipped_count", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("summary", JSON, nullable=False, server_default="{}"),
    sa.Column("rollback_of", sa.Uuid(), nullable=True),
    _enum_check("status", BULK_JOB_STATUSES),
    _enum_check("mode", BULK_JOB_MODES),
    sa.Index(None, "account_id", "created_at"),
    sa.Index(None, "status"),
    sa.Index(None, "dagster_run_id"),
    sa.Index(None, "rollback_of"),
)

bulk_job_items = sa.Table(
    "bulk_job_items",
    metadata,
    # no foreign key: items are written only with their job, in its transaction, and jobs are never
    # deleted (the per-row RI check was most of a 1M-id create)
    sa.Column("bulk_job_id", sa.Uuid(), nullable=False),
    # position in the job: batches walk seq ranges, so a resumed run starts after the last commit
    sa.Column("seq", sa.Integer(), nullable=False),
    sa.Column("entity_id", sa.Uuid(), nullable=False),
    sa.Column("status", sa.String(16), nullable=False, server_default="pending"),
    sa.Column("error", sa.Text(), nullable=True),
    sa.Column("before", JSON, nullable=True),
    sa.Column("after", JSON, nullable=True),
    sa.Column("updated_at", TS, nullable=True),
    sa.PrimaryKeyConstraint("bulk_job_id", "seq"),
    _enum_check("status", ITEM_STATUSES),
    # status reads walk the job's primary-key range; a rollback looks up succeeded items by entity
    sa.Index(
        "ix_bulk_job_items_succeeded_entity_id",
        "bulk_job_id",
        "entity_id",
        postgresql_where=sa.text("status = 'succeeded'"),
        sqlite_where=sa.text("status = 'succeeded'"),
    ),
)

audit_log = sa.Table(
    "audit_log",
    metadata,
    # append-only: triggers created by the migration refuse UPDATE and DELETE
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
    # no foreign key: history outlives what it describes, and a check per audit row cost a
    # quarter of the audit insert of an import (migration 0005)
    sa.Column("account_id", sa.Uuid(), nullable=False),
    sa.Column("occurred_at", TS, nullable=False, server_default=_now()),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Column("operation", sa.String(64), nullable=False),
    sa.Column("entity_type", sa.String(32), nullable=False),
    sa.Column("entity_id", sa.Uuid(), nullable=False),
    sa.Column("before", JSON, nullable=True),
    sa.Column("after", JSON, nullable=True),
    # THE link to the change set that wrote the row (migration 0009), and the only one: the
    # import_id, bulk_job_id and sync_run_id columns that named it too are gone (migration 0013).
    # NULL only on a row from before change sets that named nothing.
    sa.Column("change_set_id", sa.Uuid(), nullable=True),
    sa.Index(None, "account_id", "entity_type", "entity_id"),
    # partial, as the link columns' were (migration 0005)
    sa.Index(
        None,
        "change_set_id",
        postgresql_where=sa.text("change_set_id IS NOT NULL"),
        sqlite_where=sa.text("change_set_id IS NOT NULL"),
    ),
)

import_history = sa.Table(
    "import_history",
    metadata,
    _change_set_id(),
    _account(),
    # the import history's columns: date/time, type, file, created, updated, skipped, errors, status
    sa.Column("started_at", TS, nullable=False, server_default=_now()),
    sa.Column("type", sa.String(32), nullable=False),
    sa.Column("file", sa.String(500), nullable=True),
    sa.Column("created", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("updated", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("skipped", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("errors", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("status", sa.String(16), nullable=False, server_default="pending"),
    # ours
    sa.Column("finished_at", TS, nullable=True),
    sa.Column("source_path", sa.Text(), nullable=True),
    sa.Column("content_sha256", sa.String(64), nullable=True),
    sa.Column("rows_read", sa.Integer(), nullable=False, server_default="0"),
    # rows [0, rows_committed) are written: a resumed run starts there
    sa.Column("rows_committed", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("options", JSON, nullable=False, server_default="{}"),
    sa.Column("error_message", sa.Text(), nullable=True),
    sa.Column("failed_rows_path", sa.Text(), nullable=True),
    sa.Column("dry_run", sa.Boolean(), nullable=False, server_default=sa.false()),
    sa.Column("dagster_run_id", sa.String(64), nullable=True),
    sa.Column("partition_key", sa.String(500), nullable=True),
    sa.Column("created_by", sa.String(200), nullable=True),
    # rows flagged for review (a subset of skipped); side counts such as candidates created
    sa.Column("flagged", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("details", JSON, nullable=False, server_default="{}"),
    _enum_check("status", IMPORT_STATUSES),
    sa.Index(None, "account_id", "started_at"),
    sa.Index(None, "account_id", "content_sha256"),
)

import_flags = sa.Table(
    "import_flags",
    metadata,
    # the review queue of the "flag" duplicate strategy: the row was not written
    _id(),
    _account(),
    sa.Column("import_id", sa.Uuid(), sa.ForeignKey("import_history.id"), nullable=False),
    sa.Column("row_number", sa.Integer(), nullable=False),
    sa.Column("entity_type", sa.String(32), nullable=False),
    sa.Column("entity_id", sa.Uuid(), nullable=True),
    sa.Column("reason", sa.String(64), nullable=False),
    sa.Column("data", JSON, nullable=False, server_default="{}"),
    sa.Column("created_at", TS, nullable=False, server_default=_now()),
    sa.Column("resolved_at", TS, nullable=True),
    sa.Index(None, "import_id"),
    sa.Index(None, "account_id", "entity_type", "entity_id"),
)

sync_runs = sa.Table(
    "sync_runs",
    metadata,
    _change_set_id(),
    _account(),
    sa.Column("sync_name", sa.String(200), nullable=False),
    sa.Column("started_at", TS, nullable=False, server_default=_now()),
    sa.Column("finished_at", TS, nullable=True),
    sa.Column("status", sa.String(16), nullable=False, server_default="processing"),
    sa.Column("records_read", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("created", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("updated", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("skipped", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("conflicts", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("errors", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("error_message", sa.Text(), nullable=True),
    sa.Column("details", JSON, nullable=False, server_default="{}"),
    sa.Column("dagster_run_id", sa.String(64), nullable=True),
    # migration 0011: rows equal to their record (a subset of skipped), records deleted, where the
    # run started and how far its committed batches reached ({"value": ..., "key": ...})
    sa.Column("unchanged", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("deleted", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("cursor_from", JSON, nullable=True),
    sa.Column("cursor", JSON, nullable=True),
    sa.Column("full_refresh", sa.Boolean(), nullable=False, server_default=sa.false()),
    sa.Column("direction", sa.String(16), nullable=False, server_default="in"),
    sa.Index(None, "account_id", "sync_name", "started_at"),
)

# monitoring (migration 0012): failed runs and the notifications about them, and every delivery attempt
DELIVERY_STATUSES = ("pending", "claimed", "sending", "sent", "dead", "unconfirmed")

run_alerts = sa.Table(
    "run_alerts",
    metadata,
    # one row per failed or crashed Dagster run, recorded by the run-failure sensor
    sa.Column("run_id", sa.String(64), primary_key=True),
    sa.Column("job_name", sa.String(200), nullable=False),
    sa.Column("kind", sa.String(32), nullable=True),
    sa.Column("account", sa.String(64), nullable=True),
    sa.Column("change_set_id", sa.Uuid(), nullable=True),
    sa.Column("run_status", sa.String(16), nullable=False),
    sa.Column("reason", sa.Text(), nullable=True),
    sa.Column("run_url", sa.Text(), nullable=True),
    sa.Column("recorded_at", TS, nullable=False, server_default=_now()),
    sa.Index(None, "recorded_at"),
)

alert_deliveries = sa.Table(
    "alert_deliveries",
    metadata,
    # one notification of one alert to one receiver (a webhook URL or an email address): at most once
    _id(),
    sa.Column("run_id", sa.String(64), sa.ForeignKey("run_alerts.run_id"), nullable=False),
    sa.Column("target", sa.String(500), nullable=False),
    sa.Column("channel", sa.String(16), nullable=False),
    sa.Column("status", sa.String(16), nullable=False, server_default="pending"),
    sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("last_error", sa.Text(), nullable=True),
    sa.Column("next_attempt_at", TS, nullable=True),
    sa.Column("claimed_at", TS, nullable=True),
    sa.Column("claim_token", sa.String(32), nullable=True),
    sa.Column("sent_at", TS, nullable=True),
    sa.UniqueConstraint("run_id", "target"),
    _enum_check("status", DELIVERY_STATUSES),
    sa.Index(None, "status", "next_attempt_at"),
)

delivery_attempts = sa.Table(
    "delivery_attempts",
    metadata,
    # every attempt to send an outbox email or an alert: written before the send, finished after it
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
    # automation_event | alert
    sa.Column("subject", sa.String(32), nullable=False),
    sa.Column("subject_id", sa.String(64), nullable=False),
    sa.Column("target", sa.String(500), nullable=True),
    sa.Column("attempt", sa.Integer(), nullable=False),
    sa.Column("started_at", TS, nullable=False),
    sa.Column("finished_at", TS, nullable=True),
    # sending | sent | failed | interrupted
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("error", sa.Text(), nullable=True),
    sa.Index(None, "subject", "subject_id"),
)

sync_conflicts = sa.Table(
    "sync_conflicts",
    metadata,
    # a record changed on both sides since a manual-strategy connection's last successful sync
    _id(),
    _account(),
    sa.Column("sync_run_id", sa.Uuid(), sa.ForeignKey("sync_runs.id"), nullable=False),
    sa.Column("sync_name", sa.String(200), nullable=False),
    sa.Column("entity_type", sa.String(32), nullable=False),
    sa.Column("entity_id", sa.Uuid(), nullable=True),
    sa.Column("key", sa.String(200), nullable=False),
    sa.Column("source_values", JSON, nullable=False),
    sa.Column("target_values", JSON, nullable=False),
    sa.Column("created_at", TS, nullable=False, server_default=_now()),
    sa.Column("resolved_at", TS, nullable=True),
    sa.Column("resolution", sa.String(16), nullable=True),
    sa.Column("resolved_by", sa.String(200), nullable=True),
    sa.Index(None, "account_id", "sync_name"),
    sa.Index(None, "sync_run_id"),
)

# record tables an account owns, by the entity_type name used in jobs, tags and the audit log
ENTITY_TABLES: dict[str, sa.Table] = {
    "applications": applications,
    "candidates": users,
    "jobs": jobs,
    "contracts": contracts,
}
