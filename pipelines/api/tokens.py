"""API bearer tokens: one or more per account, stored as sha256 digests, shown once at creation."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa

from connectors.store import RecordStore
from connectors.store.schema import api_tokens

# 32 random bytes, url-safe base64: 43 characters
TOKEN_PREFIX = "bko_"
TOKEN_BYTES = 32


class TokenError(Exception):
    """A request's token is missing, unknown or revoked."""


class TokenNotFound(TokenError):
    pass


class TokenRevoked(TokenError):
    pass


@dataclass(frozen=True)
class IssuedToken:
    """A freshly created token: `token` is the secret, never stored and never shown again."""

    id: uuid.UUID
    account_id: uuid.UUID
    name: str
    token: str


@dataclass(frozen=True)
class Principal:
    """Who a request acts as: the token's account (which scopes everything) and optional user."""

    token_id: uuid.UUID
    account_id: uuid.UUID
    user_id: uuid.UUID | None


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def create_token(
    store: RecordStore, account_id: uuid.UUID, *, name: str = "api", user_id: uuid.UUID | None = None
) -> IssuedToken:
    """Create a bearer token for an account.

    Args:
        store: The record store.
        account_id: The account the token acts for.
        name: A label to tell tokens apart when listing or revoking them.
        user_id: The user recorded as `created_by` on bulk jobs created with the token.

    Returns:
        The token id and the secret itself; only its sha256 digest is stored.
    """
    # a fixed prefix: never starts with "-" (a command line would read it as an option) and
    # secret scanners can recognise it
    token = TOKEN_PREFIX + secrets.token_urlsafe(TOKEN_BYTES)
    token_id = uuid.uuid4()
    with store.begin() as conn:
        conn.execute(
            api_tokens.insert().values(
                id=token_id,
                account_id=account_id,
                user_id=user_id,
                name=name,
                token_sha256=digest(token),
                created_at=datetime.now(UTC),
            )
        )
    return IssuedToken(id=token_id, account_id=account_id, name=name, token=token)


def revoke_token(store: RecordStore, token_or_id: str) -> int:
    """Revoke a token given its id or the token itself; returns how many tokens were revoked.

    Revoked tokens stay in the table so requests with them get 403, not 401.
    """
    try:
        where = api_tokens.c.id == uuid.UUID(token_or_id)
    except ValueError:
        where = api_tokens.c.token_sha256 == digest(token_or_id)
    with store.begin() as conn:
        result = conn.execute(
            api_tokens.update().where(where, api_tokens.c.revoked_at.is_(None)).values(revoked_at=datetime.now(UTC))
        )
    return result.rowcount


def list_tokens(store: RecordStore, account_id: uuid.UUID) -> list[dict]:
    """The account's tokens (never their secrets), oldest first."""
    cols = [api_tokens.c.id, api_tokens.c.name, api_tokens.c.user_id, api_tokens.c.created_at, api_tokens.c.revoked_at]
    with store.engine.connect() as conn:
        rows = conn.execute(
            sa.select(*cols).where(api_tokens.c.account_id == account_id).order_by(api_tokens.c.created_at)
        )
        return [dict(row._mapping) for row in rows]


def authenticate(store: RecordStore, token: str) -> Principal:
    """The principal a bearer token stands for.

    Raises:
        TokenNotFound: no token has this digest.
        TokenRevoked: the token was revoked.
    """
    # The index finds the row by the token's sha256, never by the secret: how long that lookup takes
    # tells nothing an attacker can steer towards the secret. The match is then confirmed in constant time.
    presented = digest(token)
    with store.engine.connect() as conn:
        row = conn.execute(
            sa.select(
                api_tokens.c.id,
                api_tokens.c.account_id,
                api_tokens.c.user_id,
                api_tokens.c.revoked_at,
                api_tokens.c.token_sha256,
            ).where(api_tokens.c.token_sha256 == presented)
        ).first()
    if row is None or not hmac.compare_digest(row.token_sha256, presented):
        raise TokenNotFound("unknown token")
    if row.revoked_at is not None:
        raise TokenRevoked("token was revoked")
    return Principal(token_id=row.id, account_id=row.account_id, user_id=row.user_id)
