"""How a refused write is told: in words, never the SQL."""

from __future__ import annotations

import sqlalchemy as sa


class WriteFailed(Exception):
    """The database refused a batch; the message says what happened in words (never the SQL).

    `__cause__` is the database error: a transient one (lost connection, lock timeout) is
    retried by the caller's policy, and the batch was rolled back as a whole.
    """


def db_reason(exc: sa.exc.DBAPIError) -> str:
    """The database's own message for EXC: its first line, never the statement or its parameters."""
    orig = exc.orig
    diag = getattr(orig, "diag", None)
    text = ""
    if orig is not None:
        text = getattr(diag, "message_primary", None) or next(iter(str(orig).strip().splitlines()), "")
    column = getattr(diag, "column_name", None)
    if column and column not in text:
        text += f" (column {column})"
    if exc.connection_invalidated and "connection" not in text:
        text = f"the connection to the database was lost: {text}"
    return text[:300] or type(orig or exc).__name__
