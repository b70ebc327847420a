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

from connectors.store.importing.errors import WriteFailed, db_reason
from connectors.store.importing.writer import OUTCOMES, BatchOutcome, ImportWriter

__all__ = ["OUTCOMES", "BatchOutcome", "ImportWriter", "WriteFailed", "db_reason"]
