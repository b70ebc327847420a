"""Sync fixtures: a real source database (PostgreSQL, MariaDB or SQLite) holding an HR system's
applications table, and connection files written like a data engineer would."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml

MARIADB_ADMIN_URL = "mysql+pymysql://root@127.0.0.1:3306/"

SOURCE_MAPPING = {
    "columns": {
        "id": "external_id",
        "email": "email",
        "first_name": "first_name",
        "last_name": "last_name",
        "job_code": "job_code",
        "stage": "stage",
        "channel": "source",
        "updated_at": None,
    }
}

hr = sa.MetaData()
hr_applications = sa.Table(
    "hr_applications",
    hr,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("email", sa.String(200)),
    sa.Column("first_name", sa.String(100)),
    sa.Column("last_name", sa.String(100)),
    sa.Column("job_code", sa.String(40)),
    sa.Column("stage", sa.String(40)),
    sa.Column("channel", sa.String(40)),
    sa.Column("updated_at", sa.DateTime(timezone=True), index=True),
)

BASE = datetime(2026, 1, 1, tzinfo=UTC)


class Source:
    """The HR system's database: rows in, rows edited, rows deleted."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = sa.create_engine(url)
        hr.drop_all(self.engine)
        hr.create_all(self.engine)

    def add(
        self, n: int, *, start: int = 1, at: datetime | None = None, stage: str = "applied", job_code: str | None = None
    ) -> None:
        rows = [
            {
                "id": f"A{i:06d}",
                "email": f"person{i}@example.com",
                "first_name": f"First{i}",
                "last_name": f"Last{i}",
                "job_code": job_code or f"ENG-{i % 3}",
                "stage": stage,
                "channel": "career site",
                "updated_at": at or BASE + timedelta(minutes=i),
            }
            for i in range(start, start + n)
        ]
        with self.engine.begin() as c:
            c.execute(hr_applications.insert(), rows)

    def edit(self, ids: list[str], *, at: datetime, **values: str | None) -> None:
        with self.engine.begin() as c:
            c.execute(hr_applications.update().where(hr_applications.c.id.in_(ids)).values(updated_at=at, **values))

    def delete(self, ids: list[str]) -> None:
        with self.engine.begin() as c:
            c.execute(hr_applications.delete().where(hr_applications.c.id.in_(ids)))

    def dispose(self) -> None:
        self.engine.dispose()


def mariadb_database() -> str:
    admin = sa.create_engine(MARIADB_ADMIN_URL)
    name = f"bulkops_sync_{uuid.uuid4().hex[:10]}"
    with admin.begin() as c:
        c.exec_driver_sql(f"CREATE DATABASE `{name}`")
    admin.dispose()
    return f"{MARIADB_ADMIN_URL}{name}"


@pytest.fixture(params=["postgresql", "mariadb", "sqlite"])
def source(request: pytest.FixtureRequest, pg_database_factory, tmp_path: Path) -> Iterator[Source]:
    """The source system's database, once per kind."""
    if request.param == "postgresql":
        url = pg_database_factory()
    elif request.param == "mariadb":
        url = mariadb_database()
    else:
        url = f"sqlite:///{tmp_path / 'hr.db'}"
    s = Source(url)
    yield s
    s.dispose()
    if request.param == "mariadb":
        admin = sa.create_engine(MARIADB_ADMIN_URL)
        with admin.begin() as c:
            c.exec_driver_sql(f"DROP DATABASE IF EXISTS `{sa.make_url(url).database}`")
        admin.dispose()


@pytest.fixture
def pg_source(pg_database_factory) -> Iterator[Source]:
    s = Source(pg_database_factory())
    yield s
    s.dispose()


def write_connection(folder: Path, name: str, account: str, url_env: str, **overrides) -> Path:
    """A connection file NAME.yaml in FOLDER reading hr_applications by the URL in $URL_ENV."""
    spec = {
        "account": account,
        "entity": "applications",
        "source": {
            "type": "sql",
            "url": {"env": url_env},
            "table": "hr_applications",
            "key": "id",
            "cursor": "updated_at",
        },
        "key_field": "external_id",
        "mapping": SOURCE_MAPPING,
        "conflict": "source_wins",
        "delete": "ignore",
        "schedule": "*/15 * * * *",
        "batch_size": 50,
        **overrides,
    }
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    return path
