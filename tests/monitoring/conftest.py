"""The API server fixtures of tests/api, for the monitoring endpoints; a record store of a test's own."""

from collections.abc import Callable
from pathlib import Path

import pytest

from connectors.store import RecordStore
from tests.api.conftest import api_instance, api_servers, base_url  # noqa: F401


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def own_store(
    request: pytest.FixtureRequest, tmp_path: Path, own_store_at: Callable[[str], RecordStore]
) -> RecordStore:
    """A migrated record store of the test's own: numbers over every account are its accounts' alone."""
    if request.param == "postgresql":
        return own_store_at(request.getfixturevalue("pg_database_factory")())
    return own_store_at(f"sqlite:///{tmp_path / 'own.db'}")
