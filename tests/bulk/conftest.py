"""Record factories for bulk-job tests: real rows in the account's corner of the store."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import pytest
import sqlalchemy as sa

from connectors.store import RecordStore, schema


@dataclass
class Seeder:
    store: RecordStore
    account_id: uuid.UUID

    def candidate(self, **values) -> uuid.UUID:
        cid = uuid.uuid4()
        with self.store.begin() as conn:
            conn.execute(
                schema.users.insert().values(
                    id=cid,
                    account_id=self.account_id,
                    email=f"{cid.hex[:8]}@example.com",
                    email_normalized=f"{cid.hex[:8]}@example.com",
                    first_name="Ada",
                    **values,
                )
            )
        return cid

    def job(self, **values) -> uuid.UUID:
        jid = uuid.uuid4()
        with self.store.begin() as conn:
            conn.execute(schema.jobs.insert().values(id=jid, account_id=self.account_id, title="Engineer", **values))
        return jid

    def applications(self, n: int, **values) -> list[uuid.UUID]:
        job_id = self.job()
        cand = self.candidate()
        ids = [uuid.uuid4() for _ in range(n)]
        with self.store.begin() as conn:
            conn.execute(
                schema.applications.insert(),
                [
                    {"id": i, "account_id": self.account_id, "candidate_id": cand, "job_id": job_id, **values}
                    for i in ids
                ],
            )
        return ids

    def contracts(self, n: int, **values) -> list[uuid.UUID]:
        ids = [uuid.uuid4() for _ in range(n)]
        with self.store.begin() as conn:
            conn.execute(
                schema.contracts.insert(),
                [{"id": i, "account_id": self.account_id, "status": "draft", **values} for i in ids],
            )
        return ids

    def automation(self, name: str, action: str, config: dict) -> None:
        with self.store.begin() as conn:
            conn.execute(
                schema.automations.insert().values(
                    id=uuid.uuid4(), account_id=self.account_id, name=name, action=action, config=config
                )
            )

    def rows(self, table: sa.Table, ids: list[uuid.UUID]) -> dict[uuid.UUID, sa.Row]:
        with self.store.engine.connect() as conn:
            return {r.id: r for r in conn.execute(sa.select(table).where(table.c.id.in_(ids)))}

    def audit(self, job_id: uuid.UUID | str) -> list[sa.Row]:
        a = schema.audit_log
        with self.store.engine.connect() as conn:
            return list(conn.execute(sa.select(a).where(a.c.change_set_id == uuid.UUID(str(job_id))).order_by(a.c.id)))

    def items(self, job_id: uuid.UUID | str) -> list[sa.Row]:
        t = schema.bulk_job_items
        with self.store.engine.connect() as conn:
            return list(conn.execute(sa.select(t).where(t.c.bulk_job_id == uuid.UUID(str(job_id))).order_by(t.c.seq)))

    def tags(self, entity_type: str, entity_id: uuid.UUID) -> list[str]:
        t = schema.tags
        with self.store.engine.connect() as conn:
            return sorted(
                conn.scalars(
                    sa.select(t.c.tag).where(
                        t.c.account_id == self.account_id, t.c.entity_type == entity_type, t.c.entity_id == entity_id
                    )
                )
            )


def archive_job(store: RecordStore, account: uuid.UUID, ids: list[uuid.UUID], parallel: int = 1) -> uuid.UUID:
    """A bulk job archiving the applications IDS, PARALLEL ranges (pending, not launched)."""
    from pipelines.bulk import service

    job = service.create_job(
        store,
        account,
        created_by=None,
        entity_type="applications",
        operation="status_update",
        params={"status": "archived"},
        entity_ids=ids,
        parallel=parallel,
    )
    return uuid.UUID(job["id"])


@pytest.fixture
def seed(store: RecordStore, account: uuid.UUID) -> Seeder:
    return Seeder(store, account)


@pytest.fixture
def other_seed(store: RecordStore) -> Seeder:
    """Records of a second account, for tenancy tests."""
    return Seeder(store, store.ensure_account(f"o-{uuid.uuid4().hex[:10]}"))
