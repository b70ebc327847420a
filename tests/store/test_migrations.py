from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from connectors.store import RecordStore, SchemaOutOfDate, make_engine, migrate
from connectors.store.schema import metadata


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def empty_url(request: pytest.FixtureRequest, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'empty.db'}"
    factory: Callable[[], str] = request.getfixturevalue("pg_database_factory")
    return factory()


def _tables(engine: sa.Engine) -> set[str]:
    return set(sa.inspect(engine).get_table_names()) - {"alembic_version"}


def test_upgrade_creates_every_table_and_downgrade_removes_them(empty_url: str) -> None:
    engine = make_engine(empty_url)
    migrate.upgrade(engine)
    assert migrate.current_revision(engine) == migrate.head_revision()
    assert _tables(engine) == set(metadata.tables)

    migrate.downgrade(engine, "base")
    assert migrate.current_revision(engine) is None
    assert _tables(engine) == set()

    migrate.upgrade(engine)
    assert _tables(engine) == set(metadata.tables)
    engine.dispose()


def test_each_revision_downgrades_one_step_and_back(empty_url: str) -> None:
    engine = make_engine(empty_url)
    migrate.upgrade(engine)
    script = ScriptDirectory(str(migrate.MIGRATIONS_DIR))
    for rev in script.walk_revisions():
        migrate.downgrade(engine, rev.down_revision or "base")
        assert migrate.current_revision(engine) == rev.down_revision
    migrate.upgrade(engine)
    assert migrate.current_revision(engine) == migrate.head_revision()
    engine.dispose()


def test_migrations_match_the_declared_schema(empty_url: str) -> None:
    engine = make_engine(empty_url)
    migrate.upgrade(engine)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == []
    engine.dispose()


def test_store_refuses_a_database_behind_the_code_and_names_the_command(empty_url: str) -> None:
    with pytest.raises(SchemaOutOfDate, match=r"has no schema yet.*run `bulkops db upgrade`"):
        RecordStore(empty_url)
    engine = make_engine(empty_url)
    migrate.upgrade(engine, "0001")
    if migrate.head_revision() != "0001":
        with pytest.raises(SchemaOutOfDate, match=r"is at revision 0001.*bulkops db upgrade"):
            RecordStore(empty_url)
    migrate.upgrade(engine)
    RecordStore(empty_url).dispose()
    engine.dispose()


def test_the_head_known_without_alembic_is_alembics_head() -> None:
    # a new migration must update migrate.HEAD: the store's open-time check reads only that
    assert ScriptDirectory(str(migrate.MIGRATIONS_DIR)).get_current_head() == migrate.HEAD


def test_opening_the_store_loads_neither_alembic_nor_arrow_nor_httpx(tmp_path) -> None:
    # what a run worker pays before its first step: the code location and the store's schema check
    url = f"sqlite:///{tmp_path / 'lean.db'}"
    engine = make_engine(url)
    migrate.upgrade(engine)
    engine.dispose()
    code = (
        "import sys, warnings; warnings.simplefilter('ignore');"
        "import pipelines.definitions; from connectors.store import RecordStore;"
        f"RecordStore({url!r}).dispose();"
        "print(sorted(m for m in ('alembic', 'pyarrow', 'httpx', 'pandas', 'numpy') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert done.stdout.strip() == "[]", done.stdout
