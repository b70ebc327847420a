"""File imports in the record store: the writer (`connectors.store.importing`) and the rollback.

The set-based writer lives in the `importing` package, one module per step; its names are
re-exported here for the code that imports them from this module. The rollback below undoes
one import set-based: updated records get their first before-image back, created ones are
deleted, every change audited.

Provenance: created records carry `import_id`; every created or updated record has an audit
row with the import id, the actor, before and after.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from connectors.store.dialect import dialect_of
from connectors.store.importing import WriteFailed

if TYPE_CHECKING:
    from connectors.store.importing import OUTCOMES, BatchOutcome, ImportWriter


def __getattr__(name: str) -> Any:
    # the writer's names load it (and Arrow) on first use: `finish_run_imports` does not need it
    if name in ("OUTCOMES", "BatchOutcome", "ImportWriter"):
        from connectors.store import importing

        return getattr(importing, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "OUTCOMES",
    "BatchOutcome",
    "ImportWriter",
    "WriteFailed",
    "finish_run_imports",
    "serialized_batches",
]


@contextlib.contextmanager
def serialized_batches(conn: sa.Connection) -> Iterator[None]:
    """On SQLite, make CONN's transactions start with `BEGIN IMMEDIATE` while the block runs.

    A batch reads the records it matches against, then writes; begun deferred, a batch that read
    before a concurrent import's batch committed cannot write any more ("database is locked",
    which no busy timeout cures). Immediate, it waits (busy_timeout) for the write lock first and
    then reads what the other batch committed. PostgreSQL batches take an advisory lock instead
    (`ImportWriter.write_batch`).
    """
    with dialect_of(conn).serialized_batches(conn):
        yield


# -- rollback: an import is a change set; `connectors.store.changes.rollback` undoes it


def finish_run_imports(store: Any, run_id: str, status: str, error: str) -> int:
    """End the unfinished history rows a Dagster run left (pending or processing) as STATUS with ERROR.

    A run that died, gave up after its retries or was cancelled before its import could record
    it never leaves a row `processing`; a later run of the file still resumes after its
    committed batches. Returns the number of rows ended.
    """
    from connectors.store.schema import import_history as h

    with store.begin() as conn:
        return conn.execute(
            h.update()
            .where(h.c.dagster_run_id == run_id, h.c.status.in_(["pending", "processing"]))
            .values(status=status, finished_at=datetime.now(UTC), error_message=error[:1900])
        ).rowcount
