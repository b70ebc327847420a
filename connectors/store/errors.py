"""Database and driver failures told in words: what happened, never the SQL or its parameters.

History rows, bulk jobs and the command line store or print `describe_error(exc)` instead of
`str(exc)`, which for SQLAlchemy errors carries the whole statement and its bound values.
"""

from __future__ import annotations

import re
import sqlite3

import sqlalchemy as sa

MAX_REASON = 300
CONTEXT_NOTE = "while writing: "

# driver messages that mean the server was never reached
_UNREACHABLE = (
    "connection refused",
    "could not connect",
    "could not translate host name",
    "name or service not known",
    "no such host",
    "unable to open database file",
    "connection to server at",
    "connection timeout expired",
    "timeout expired",
    "password authentication failed",
    "does not exist",  # database "x" does not exist (only checked at connect time)
)
# driver messages that mean an open connection went away
_LOST = (
    "server closed the connection",
    "terminating connection",
    "connection is closed",
    "connection already closed",
    "consuming input failed",
    "connection is lost",
    "ssl syscall error",
    "the connection is closed",
)


def describe_error(exc: BaseException, *, url: str | sa.URL | None = None, context: str | None = None) -> str:
    """One short sentence for a failure, without SQL, parameters or a traceback.

    Args:
        exc: the exception; a SQLAlchemy error, a driver error (psycopg, sqlite3), or anything
            else (told as its first line, with the type name for Python's built-in errors).
        url: the record store's URL, named (without password) when it cannot be reached or the
            connection was lost.
        context: what was being written, e.g. "the batch at rows 20001-40000"; by default the
            one `add_context` attached to EXC on its way up.

    Returns:
        For example "the record store refused the batch at rows 20001-40000: value too long
        for type character varying(30) (column phone)", "cannot reach the record store at
        PostgreSQL 127.0.0.1:5432: Connection refused", or "lost the connection to the record
        store at PostgreSQL 127.0.0.1:5432 during the batch at rows 1-5000: server closed the
        connection unexpectedly".
    """
    db = _database_error(exc)
    if db is None:
        return _plain(exc)
    if context is None:
        context = next(
            (n[len(CONTEXT_NOTE) :] for n in reversed(getattr(exc, "__notes__", ())) if n.startswith(CONTEXT_NOTE)),
            None,
        )
    orig = db.orig if isinstance(db, sa.exc.DBAPIError) else db
    reason = _reason(orig if orig is not None else db)
    lowered = reason.lower()
    where = f" at {describe_url(url)}" if url is not None else ""
    if (isinstance(db, sa.exc.DBAPIError) and db.connection_invalidated) or any(s in lowered for s in _LOST):
        during = f" during {context}" if context else ""
        return f"lost the connection to the record store{where}{during}: {reason}"
    if _is_operational(db) and any(s in lowered for s in _UNREACHABLE):
        return f"cannot reach the record store{where}: {reason}"
    return f"the record store refused {context or 'the statement'}: {reason}"


def add_context(exc: BaseException, context: str) -> None:
    """Say what was being written when EXC was raised (a note that `describe_error` reads later)."""
    exc.add_note(f"{CONTEXT_NOTE}{context}")


def is_unreachable(exc: BaseException) -> bool:
    """Whether EXC says the record store could not be reached or the connection was lost."""
    db = _database_error(exc)
    if db is None:
        return False
    text = describe_error(db)
    return text.startswith(("cannot reach", "lost the connection"))


def describe_url(url: str | sa.URL) -> str:
    """'PostgreSQL 127.0.0.1:5432/bulkops' or 'SQLite var/bulkops.db': where, never a password."""
    try:
        u = sa.make_url(url) if isinstance(url, str) else url
    except sa.exc.ArgumentError:
        return str(url)
    backend = u.get_backend_name()
    if backend == "sqlite":
        return f"SQLite {u.database or ':memory:'}"
    name = {"postgresql": "PostgreSQL", "mysql": "MySQL"}.get(backend, backend)
    host = f"{u.host or 'localhost'}:{u.port}" if u.port else (u.host or "localhost")
    return f"{name} {host}/{u.database}" if u.database else f"{name} {host}"


def _database_error(exc: BaseException) -> BaseException | None:
    """The first SQLAlchemy or driver error in EXC's chain of causes."""
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if (isinstance(e, sa.exc.SQLAlchemyError) and not isinstance(e, sa.exc.ArgumentError)) or _is_driver_error(e):
            return e
        e = e.__cause__ or e.__context__
    return None


def _is_driver_error(exc: BaseException) -> bool:
    return isinstance(exc, sqlite3.Error) or type(exc).__module__.split(".")[0] in ("psycopg", "psycopg2")


def _is_operational(exc: BaseException) -> bool:
    if isinstance(
        exc, (sa.exc.OperationalError, sa.exc.InterfaceError, sa.exc.DisconnectionError, sa.exc.TimeoutError)
    ):
        return True
    return type(exc).__name__ in ("OperationalError", "InterfaceError", "ConnectionTimeout")


def _reason(exc: BaseException) -> str:
    diag = getattr(exc, "diag", None)
    primary = getattr(diag, "message_primary", None) if diag is not None else None
    if primary:
        text = primary
        column = getattr(diag, "column_name", None)
        constraint = getattr(diag, "constraint_name", None)
        if column and column not in text:
            text += f" (column {column})"
        elif constraint and constraint not in text:
            text += f" (constraint {constraint})"
    else:
        text = str(exc)
        if isinstance(exc, sa.exc.StatementError):
            # "(driver.Class) message\n[SQL: ...]" without the driver prefix and the statement
            text = re.sub(r"^\([\w.]+\)\s*", "", text.split("\n[SQL:", 1)[0])
        lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
        text = lines[0] if lines else type(exc).__name__
        # psycopg: 'connection failed: connection to server at "h", port 5432 failed: Connection refused'
        if "failed: " in text and text.lower().startswith(("connection failed", "connection to server")):
            text = text.rsplit("failed: ", 1)[1]
    return _clip(re.sub(r"^(FATAL|ERROR):\s+", "", text))


def _plain(exc: BaseException) -> str:
    message = getattr(exc, "message", None)
    text = message if isinstance(message, str) and message else str(exc)
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    first = lines[0] if lines else ""
    if type(exc).__module__ == "builtins" and not isinstance(exc, OSError):
        return _clip(f"{type(exc).__name__}: {first}" if first else type(exc).__name__)
    return _clip(first or type(exc).__name__)


def _clip(text: str) -> str:
    return text if len(text) <= MAX_REASON else text[: MAX_REASON - 1] + "…"
