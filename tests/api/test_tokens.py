"""Tokens: created by `bulkops tokens create`, stored as sha256 digests, revoked into 403s."""

from __future__ import annotations

import hashlib
import uuid

import httpx
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from connectors.store import RecordStore
from connectors.store.schema import accounts, api_tokens
from pipelines.api.tokens import authenticate, create_token
from pipelines.cli import main
from tests.api.helpers import error, result


def _slug(store: RecordStore, account: uuid.UUID) -> str:
    with store.engine.connect() as conn:
        return conn.scalar(sa.select(accounts.c.slug).where(accounts.c.id == account))


def test_tokens_are_stored_as_sha256_digests_only(store: RecordStore, account: uuid.UUID) -> None:
    issued = create_token(store, account, name="ci")
    assert len(issued.token) >= 43
    with store.engine.connect() as conn:
        row = conn.execute(sa.select(api_tokens).where(api_tokens.c.id == issued.id)).one()
    assert row.token_sha256 == hashlib.sha256(issued.token.encode()).hexdigest()
    assert issued.token not in [str(v) for v in row]
    assert authenticate(store, issued.token).account_id == account


def test_cli_creates_lists_and_revokes_tokens(
    store: RecordStore, store_url: str, account: uuid.UUID, base_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BULKOPS_DATABASE_URL", store_url)
    slug = _slug(store, account)
    runner = CliRunner()

    created = runner.invoke(main, ["tokens", "create", slug, "--name", "laptop"])
    assert created.exit_code == 0, created.output
    token = created.stdout.strip().splitlines()[-1]
    headers = {"Authorization": f"Bearer {token}"}
    assert result(httpx.get(f"{base_url}/api/bulk-jobs-list", headers=headers)) == []

    listed = runner.invoke(main, ["tokens", "list", slug])
    assert "laptop" in listed.stdout and "active" in listed.stdout and token not in listed.stdout

    revoked = runner.invoke(main, ["tokens", "revoke", token])
    assert revoked.exit_code == 0 and "revoked" in revoked.stdout
    assert error(httpx.get(f"{base_url}/api/bulk-jobs-list", headers=headers), 403)["code"] == "token_revoked"
    assert runner.invoke(main, ["tokens", "revoke", token]).exit_code != 0


def test_cli_refuses_an_unknown_account(store_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BULKOPS_DATABASE_URL", store_url)
    out = CliRunner().invoke(main, ["tokens", "create", f"nobody-{uuid.uuid4().hex[:8]}"])
    assert out.exit_code != 0


def test_tokens_never_look_like_command_line_options(store: RecordStore, account: uuid.UUID) -> None:
    from pipelines.api.tokens import TOKEN_PREFIX

    tokens = [create_token(store, account, name=f"t{i}").token for i in range(200)]
    assert all(t.startswith(TOKEN_PREFIX) for t in tokens)
    assert len(set(tokens)) == len(tokens)


def test_a_token_is_confirmed_by_a_constant_time_comparison(
    store: RecordStore, account: uuid.UUID, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hmac

    from pipelines.api import tokens

    compared: list[tuple[str, str]] = []
    constant_time = hmac.compare_digest

    def compare_digest(a: str, b: str) -> bool:
        compared.append((a, b))
        return constant_time(a, b)

    monkeypatch.setattr(tokens.hmac, "compare_digest", compare_digest)
    issued = create_token(store, account, name="timing")
    assert authenticate(store, issued.token).account_id == account
    expected = hashlib.sha256(issued.token.encode()).hexdigest()
    assert compared == [(expected, expected)]
    with pytest.raises(tokens.TokenNotFound):
        authenticate(store, issued.token[:-1] + ("A" if issued.token[-1] != "A" else "B"))
