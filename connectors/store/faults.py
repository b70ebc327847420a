"""Which database errors are transient: worth another attempt of the same work after a pause.

One rule for every write path (imports, bulk jobs, rollbacks): a lost or refused connection,
a server shutting down or restarting, a deadlock or serialization failure, a lock or statement
timeout, a busy or locked SQLite file. Anything else (constraint, bad value, missing table)
fails the same way again and is terminal.
"""

from __future__ import annotations

import re
import sqlite3

import sqlalchemy as sa

# postgres sqlstates: connection (08), transaction rollback: deadlock, serialization (40),
# insufficient resources (53), admin/crash shutdown, cannot connect now (57P01-3),
# lock_not_available (55P03), query_canceled by a lock or statement timeout (57014)
_TRANSIENT_SQLSTATE = re.compile(r"^(08|40|53|57P0[123]|55P03|57014)")
_TRANSIENT_SQLITE = re.compile(r"locked|busy|unable to open database|disk i/o error", re.IGNORECASE)


def is_transient(exc: BaseException) -> bool:
    """Whether EXC (or an exception it was raised from) is a transient database fault."""
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, (sa.exc.DisconnectionError, sa.exc.TimeoutError)):
            return True
        if isinstance(e, sa.exc.DBAPIError):
            if e.connection_invalidated:
                return True
            if isinstance(e, (sa.exc.OperationalError, sa.exc.InterfaceError)) and _transient_driver_error(e.orig):
                return True
        elif _transient_driver_error(e):
            return True
        e = e.__cause__ or e.__context__
    return False


def _transient_driver_error(orig: BaseException | None) -> bool:
    if isinstance(orig, sqlite3.OperationalError):
        return bool(_TRANSIENT_SQLITE.search(str(orig)))
    try:
        import psycopg
    except ImportError:  # pragma: no cover
        return False
    if isinstance(orig, psycopg.InterfaceError):
        # the connection was closed under the client
        return True
    if isinstance(orig, psycopg.OperationalError):
        state = getattr(orig, "sqlstate", None)
        # no sqlstate: the connection itself failed (refused, reset, server gone)
        return state is None or bool(_TRANSIENT_SQLSTATE.match(state))
    return False
