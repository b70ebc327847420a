"""Records to export: two accounts with candidates, jobs, applications and tags, including hard cases."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest

from connectors.store import RecordStore, schema

HARD_TEXTS = [
    "Zoë Ångström — 東京",
    'quote "inside" and, comma',
    "line one\nline two\r\nline three",
    '=HYPERLINK("http://evil.example","click")',
    "+1+cmd|' /C calc'!A0",
    "-2+3",
    "@SUM(A1:A2)",
    "\tlead tab",
    "-5",
    "100% sure_",
]


@dataclass
class Dataset:
    store: RecordStore
    account_id: uuid.UUID
    slug: str
    other_account_id: uuid.UUID
    apps: dict[uuid.UUID, dict] = field(default_factory=dict)
    candidates: dict[uuid.UUID, dict] = field(default_factory=dict)
    jobs: dict[uuid.UUID, dict] = field(default_factory=dict)
    tags: dict[uuid.UUID, list[str]] = field(default_factory=dict)


def seed(store: RecordStore, account_id: uuid.UUID, *, n: int = 12, prefix: str = "") -> Dataset:
    """N applications over two jobs and N candidates; stage/source/dates/tags vary by position."""
    ds = Dataset(store, account_id, "", uuid.UUID(int=0))
    jobs = [
        {"id": uuid.uuid4(), "account_id": account_id, "code": f"{prefix}ENG-1", "title": "Engineer"},
        {"id": uuid.uuid4(), "account_id": account_id, "code": f"{prefix}OPS-2", "title": 'Opérateur, "nuit"'},
    ]
    stages = ["review", "interview", "applied", "offer"]
    candidates, apps, tags = [], [], []
    for i in range(n):
        cid = uuid.uuid4()
        text = HARD_TEXTS[i % len(HARD_TEXTS)]
        email = f"{prefix}c{i}@example.com"
        candidates.append(
            {
                "id": cid,
                "account_id": account_id,
                "email": email,
                "email_normalized": email,
                "first_name": text if i % 3 else None,
                "last_name": f"L{i}",
            }
        )
        app = {
            "id": uuid.uuid4(),
            "account_id": account_id,
            "candidate_id": cid,
            "job_id": jobs[i % 2]["id"] if i != n - 1 else None,
            "stage": stages[i % 4],
            "status": "active" if i % 5 else "on_hold",
            "source": None if i % 4 == 3 else (text if i % 2 else "LinkedIn"),
            "applied_at": None if i == 0 else datetime(2026, 1, 1 + i, 9, 30, tzinfo=UTC),
            "external_id": f"{prefix}A{i}",
            "data": {"note": text},
            "deleted_at": datetime(2026, 2, 1, tzinfo=UTC) if i == 1 else None,
        }
        apps.append(app)
        if i % 3 == 0:
            names = ["vip"] + (["urgent"] if i % 2 == 0 else [])
            ds.tags[app["id"]] = sorted(names)
            tags += [
                {"account_id": account_id, "entity_type": "applications", "entity_id": app["id"], "tag": t}
                for t in names
            ]
    # a recruiter shares the users table with candidates: never a candidate record
    recruiter = f"{prefix}recruiter-{uuid.uuid4().hex[:6]}@example.com"
    staff = [
        {
            "id": uuid.uuid4(),
            "account_id": account_id,
            "role": "recruiter",
            "email": recruiter,
            "email_normalized": recruiter,
            "first_name": "Rita",
            "last_name": "Recruiter",
        },
    ]
    with store.begin() as conn:
        conn.execute(schema.jobs.insert(), jobs)
        conn.execute(schema.users.insert(), candidates)
        conn.execute(schema.users.insert(), staff)
        conn.execute(schema.applications.insert(), apps)
        if tags:
            conn.execute(schema.tags.insert(), tags)
    ds.jobs = {j["id"]: j for j in jobs}
    ds.candidates = {c["id"]: c for c in candidates}
    ds.apps = {a["id"]: a for a in apps}
    return ds


@pytest.fixture
def dataset(store: RecordStore) -> Dataset:
    """The account under test and another account holding look-alike records (same codes, emails)."""
    slug = f"t-{uuid.uuid4().hex[:10]}"
    account_id = store.ensure_account(slug)
    other = store.ensure_account(f"t-{uuid.uuid4().hex[:10]}")
    seed(store, other, n=8)
    ds = seed(store, account_id)
    ds.slug = slug
    ds.other_account_id = other
    return ds
