"""The set-based import writer, cut along its steps.

staging     the staging table and the parameters every statement binds
keys        how match keys compare (folded or case-sensitive)
resolve     references: jobs by code, candidates by email, applications of contracts
match       duplicate matching and the outcome of each row
write       create, update (or unchanged), flag
audit       the one INSERT of an import's audit rows
statistics  keeping the planner's statistics of the lookup tables describing the account
writer      ImportWriter, which runs them batch by batch
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from connectors.store.importing.errors import WriteFailed, db_reason

if TYPE_CHECKING:
    from connectors.store.importing.writer import OUTCOMES, BatchOutcome, ImportWriter

# the writer (and Arrow with it) loads on first use: the sensors and bulk jobs that share this
# package's modules do not pay for it when a run worker starts
_WRITER = frozenset({"OUTCOMES", "BatchOutcome", "ImportWriter"})


def __getattr__(name: str) -> Any:
    if name in _WRITER:
        from connectors.store.importing import writer

        return getattr(writer, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["OUTCOMES", "BatchOutcome", "ImportWriter", "WriteFailed", "db_reason"]
