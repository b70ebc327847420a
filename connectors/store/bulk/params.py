"""Checks the operations' `validate` share: strings, string lists, declared values."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from connectors.store import accounts, registry
from connectors.store.bulk.base import ParamsError


def str_param(params: Mapping[str, Any], key: str, max_len: int) -> str:
    value = params.get(key)
    if not isinstance(value, str) or not value.strip() or len(value) > max_len:
        raise ParamsError(f"params.{key} must be a non-empty string of at most {max_len} characters", field=key)
    return value.strip()


def str_list(params: Mapping[str, Any], key: str, *, max_len: int = 200, allow_empty: bool = False) -> list[str]:
    value = params.get(key)
    if not isinstance(value, list) or (not value and not allow_empty):
        raise ParamsError(f"params.{key} must be a {'' if allow_empty else 'non-empty '}list of strings", field=key)
    out: list[str] = []
    for v in value:
        if not isinstance(v, str) or not v.strip() or len(v) > max_len:
            raise ParamsError(
                f"params.{key} entries must be non-empty strings of at most {max_len} characters", field=key
            )
        if v.strip() not in out:
            out.append(v.strip())
    return out


def declared_value(
    entity_type: str,
    field_name: str,
    value: str,
    account_settings: Mapping[str, Any] | None,
    *,
    param: str | None = None,
) -> str:
    """`value` as spelled in the field's value set (the account's, else the default).

    Raises:
        ParamsError: the set does not hold it; `details` name the field, the value and the allowed values.
    """
    found = accounts.canonical_value(entity_type, field_name, value, account_settings)
    if found is None:
        allowed = list(registry.value_set(entity_type, field_name, account_settings) or ())
        raise ParamsError(
            f"params.{param or field_name} {value!r} is not a {field_name} of {entity_type}: use one of "
            f"{', '.join(allowed)} (an account can change them: bulkops accounts values set ACCOUNT "
            f"{entity_type}.{field_name} VALUE...)",
            field=param or field_name,
            value=value,
            allowed=allowed,
        )
    return found
