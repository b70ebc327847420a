"""Row validation and auto-advance rules, vectorised over Arrow batches."""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Mapping as AnyMapping
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from connectors.store import registry
from pipelines.imports.errors import ImportFailed
from pipelines.imports.mapping import Mapped, slug

AUTO_ADVANCE_OPS = ("==", "!=", ">", ">=", "<", "<=", "in", "contains")


def check_auto_advance(rules: tuple[dict, ...]) -> None:
    for i, rule in enumerate(rules):
        when = rule.get("when") if isinstance(rule, dict) else None
        if not isinstance(when, dict) or not when.get("field") or when.get("op") not in AUTO_ADVANCE_OPS:
            raise ImportFailed(
                f"invalid import options: auto_advance rule {i + 1} needs when: {{field, op ({', '.join(AUTO_ADVANCE_OPS)}), value}}"
            )
        if not rule.get("stage"):
            raise ImportFailed(f"invalid import options: auto_advance rule {i + 1} needs a stage")


# staged values that find records: compared without case (unless case_sensitive_keys) and
# surrounding whitespace, runs of whitespace as one space
KEY_FIELDS = ("external_id", "code", "job_code", "application_external_id", "candidate_external_id")
NUMBER_RE = r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$"

# --- declared values (status, stage)


class ValueSet:
    """A field's allowed values for an account: folds case and spacing onto the canonical value."""

    def __init__(self, entity: str, field_name: str, allowed: tuple[str, ...]) -> None:
        self.field = field_name
        self.allowed = allowed
        lookup = dict(registry.value_synonyms(entity, field_name, allowed).items())
        lookup.update({_slug(v): v for v in allowed})
        self.keys = pa.array(list(lookup), pa.string())
        self.values = pa.array(list(lookup.values()), pa.string())
        self.lookup = lookup

    def canonical(self, value: str) -> str | None:
        return self.lookup.get(_slug(value))

    def apply(self, arr: pa.Array) -> tuple[pa.Array, pa.Array]:
        """(canonical values, mask of values outside the set)."""
        pos = pc.index_in(slug(arr), value_set=self.keys)
        return pc.take(self.values, pos), pc.fill_null(pc.and_(pc.is_valid(arr), pc.is_null(pos)), False)

    def reason(self, value: Any, column: str) -> str:
        return (
            f"{self.field} {value!r} is not one of {', '.join(self.allowed)}: "
            f"add it to the map: of column {column!r} in the mapping, or to the account's {self.field} values"
        )


def _slug(value: str) -> str:
    return re.sub(r"[^0-9a-z]+", "_", str(value).lower()).strip("_")


def value_sets(entity: str, account_settings: AnyMapping[str, Any] | None) -> dict[str, ValueSet]:
    """The entity's fields that have a declared value set, with this account's values."""
    e = registry.get(entity)
    custom = {
        k.partition(".")[2] for k in ((account_settings or {}).get("value_sets") or {}) if k.startswith(f"{e.name}.")
    }
    out = {}
    for name in sorted((set(e.value_sets) | custom) & set(e.fields)):
        allowed = registry.value_set(entity, name, account_settings)
        if allowed:
            out[name] = ValueSet(entity, name, allowed)
    return out


def check_stage_options(
    entity: str, default_stage: str, auto_advance: tuple[dict, ...], account_settings: AnyMapping[str, Any] | None
) -> tuple[str, tuple[dict, ...]]:
    """Check default_stage and auto-advance target stages against the account's stages.

    Returns them folded onto the canonical values.

    Raises:
        ImportFailed: a stage outside the set.
    """
    stages = value_sets(entity, account_settings).get("stage")
    if stages is None:
        return default_stage, auto_advance

    def canon(value: str, what: str) -> str:
        got = stages.canonical(str(value))
        if got is None:
            raise ImportFailed(
                f"invalid import options: {what} {value!r} is not a stage of {entity}: choose one of {', '.join(stages.allowed)}"
            )
        return got

    default = canon(default_stage, "default_stage")
    rules = tuple(
        {**r, "stage": canon(r["stage"], f"auto_advance rule {i + 1}'s stage")} for i, r in enumerate(auto_advance)
    )
    return default, rules


# --- email addresses

# plain ascii addresses that email-validator accepts as they are; anything else takes the slow path
FAST_EMAIL_RE = (
    r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*@"
    r"([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$"
)
# email_validator.SPECIAL_USE_DOMAIN_NAMES (a test keeps them equal): importing the package costs
# half a second, so only the slow path does
SPECIAL_USE_DOMAINS = ("arpa", "invalid", "local", "localhost", "onion", "test")
SPECIAL_TLD_RE = r"(?i)\.(" + "|".join(re.escape(d) for d in SPECIAL_USE_DOMAINS) + r")$"


def normalise_email(value: str) -> tuple[str | None, str | None]:
    """(address, None) or (None, reason): invisible characters and spaces removed, the address
    taken out of a display-name form, validated by email-validator without DNS."""
    from email_validator import EmailNotValidError, validate_email

    # zero-width and other format characters go; nbsp and other spaces become spaces
    text = "".join(
        " " if c.isspace() else c for c in value if c.isspace() or unicodedata.category(c) not in ("Cf", "Cc")
    ).strip()
    if text.lower().startswith("mailto:"):
        return None, "a mailto: link, not an address: write the address alone"
    if "<" not in text:
        text = "".join(text.split())
    try:
        got = validate_email(text, check_deliverability=False, allow_display_name=True, allow_smtputf8=True)
    except EmailNotValidError as exc:
        reason = str(exc).rstrip(".")
        return None, reason[:1].lower() + reason[1:]
    return got.normalized, None


def normalise_emails(email: pa.Array) -> tuple[pa.Array, pa.Array, list[tuple[int, str]]]:
    """(email, duplicate key, [(row index, reason)]). Rows that pass an ascii pre-check are kept
    as they are (trimmed); the rest go through `normalise_email` one by one."""
    email = pc.utf8_trim_whitespace(email)
    email = pc.if_else(pc.equal(email, ""), pa.scalar(None, pa.string()), email)
    fast = pc.and_(
        pc.match_substring_regex(email, FAST_EMAIL_RE), pc.invert(pc.match_substring_regex(email, SPECIAL_TLD_RE))
    )
    fast = pc.and_(fast, pc.less_equal(pc.utf8_length(email), 254))
    slow = pc.fill_null(pc.and_(pc.is_valid(email), pc.invert(pc.fill_null(fast, False))), False)
    errors: list[tuple[int, str]] = []
    idx = pc.indices_nonzero(slow).to_pylist()
    if idx:
        fixed: list[str | None] = []
        for i, v in zip(idx, email.take(idx).to_pylist(), strict=False):
            addr, why = normalise_email(v)
            fixed.append(addr)
            if why:
                errors.append((i, f"invalid email {v!r}: {why}"))
        email = pc.replace_with_mask(email, slow, pa.array(fixed, pa.string()))
    return email, pc.utf8_lower(email), errors


_JSON_SPECIAL = r'[\\"\x00-\x1f]'
_JSON_ESCAPES = (
    ("\\", "\\\\"),
    ('"', '\\"'),
    ("\n", "\\n"),
    ("\r", "\\r"),
    ("\t", "\\t"),
    ("\b", "\\b"),
    ("\f", "\\f"),
)


def _json_string_body(arr: pa.Array) -> pa.Array:
    """Values escaped for the inside of a JSON string (quotes, backslashes, control characters)."""
    if not pc.any(pc.match_substring_regex(arr, _JSON_SPECIAL)).as_py():
        return arr
    if pc.any(pc.match_substring_regex(arr, r"[\x00-\x07\x0b\x0e-\x1f]")).as_py():
        return pa.array(
            [None if v is None else json.dumps(v, ensure_ascii=False)[1:-1] for v in arr.to_pylist()], pa.string()
        )
    for raw, escaped in _JSON_ESCAPES:
        arr = pc.replace_substring(arr, raw, escaped)
    return arr


def json_objects(items: list[tuple[str, pa.Array]], n: int) -> pa.Array:
    """One JSON object text per row from (key, string values): null values left out, the last of a repeated key wins."""
    last: dict[str, pa.Array] = {}
    for key, arr in items:
        last[key] = arr
    # every fragment ends with a comma and a null one is "": no null_handling="skip", which drops
    # rows whose values are all null (pyarrow 26); the last comma is trimmed at the end
    parts: list[pa.Array] = []
    pairs = list(last.items())
    for i in range(0, len(pairs), 100):
        frags = []
        for key, arr in pairs[i : i + 100]:
            if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
                arr = pc.cast(arr, pa.string())
            head = pa.scalar(json.dumps(str(key), ensure_ascii=False) + ':"', pa.string())
            frag = pc.binary_join_element_wise(head, _json_string_body(arr), pa.scalar('",', pa.string()), "")
            frags.append(pc.fill_null(frag, ""))
        parts.append(pc.binary_join_element_wise(*frags, "") if len(frags) > 1 else frags[0])
    body = pc.binary_join_element_wise(*parts, "") if len(parts) > 1 else parts[0]
    body = pc.utf8_rtrim(body, characters=",")
    return pc.binary_join_element_wise(pa.scalar("{", pa.string()), body, pa.scalar("}", pa.string()), "")


@dataclass
class Prepared:
    """A validated batch ready for the record store.

    `table` holds row_no, rnd (duplicate round), the entity's STAGE_FIELDS and one JSON text
    column per object (x_data, x_answers, x_terms); `json` names the column of each object
    (data, answers, terms), None when the file gives it no key.
    """

    table: pa.Table
    json: dict[str, str | None]
    errors: list[tuple[int, str, str]] = field(default_factory=list)  # (row index in batch, column, reason)


def _compare(values: pa.Array, op: str, target: object) -> pa.Array:
    if op in ("in",):
        opts = [str(v).strip().casefold() for v in (target if isinstance(target, (list, tuple)) else [target])]
        return pc.is_in(pc.utf8_lower(values), value_set=pa.array(opts, pa.string()))
    if op == "contains":
        return pc.match_substring(values, str(target), ignore_case=True)
    if isinstance(target, (int, float)) and not isinstance(target, bool):
        num_ok = pc.fill_null(pc.match_substring_regex(values, NUMBER_RE), False)
        nums = pc.cast(pc.if_else(num_ok, values, pa.scalar(None, pa.string())), pa.float64())
        rhs = pa.scalar(float(target))
        lhs = nums
    else:
        lhs, rhs = pc.utf8_lower(values), pa.scalar(str(target).strip().casefold())
    fn = {
        "==": pc.equal,
        "!=": pc.not_equal,
        ">": pc.greater,
        ">=": pc.greater_equal,
        "<": pc.less,
        "<=": pc.less_equal,
    }[op]
    return fn(lhs, rhs)


def _stage_column(entity: str, name: str, fields: dict[str, pa.Array], n: int) -> pa.Array:
    if name in fields:
        arr = fields[name]
        return arr if arr.type != pa.null() else pa.nulls(n, pa.string())
    if name == "applied_at":
        return pa.nulls(n, pa.timestamp("us", "UTC"))
    return pa.nulls(n, pa.string())


def prepare(
    entity: str,
    mapped: Mapped,
    n: int,
    *,
    auto_advance: tuple[dict, ...] = (),
    duplicate_keys: tuple[str, ...] = (),
    account_settings: AnyMapping[str, Any] | None = None,
    case_sensitive_keys: bool = False,
) -> Prepared:
    """Entity rules on a mapped batch: email addresses, declared values (stage, status), match keys, auto-advance, rounds."""
    fields = dict(mapped.fields)
    # match keys: runs of whitespace count as one space (the writer folds case in SQL)
    for key in KEY_FIELDS:
        if key in fields and pa.types.is_string(fields[key].type):
            fields[key] = pc.replace_substring_regex(pc.utf8_trim_whitespace(fields[key]), r"[\s\pZ]+", " ")
    errors = list(mapped.errors)
    e = registry.get(entity)

    def column(name: str) -> str:
        """the file column a field came from, for hints in messages (errors name the field)"""
        return mapped.sources.get(name, name)

    if "email" in fields:
        fields["email"], fields["email_norm"], bad = normalise_emails(fields["email"])
        errors.extend((i, "email", reason) for i, reason in bad)
    # PostgreSQL text cannot hold NUL (its COPY refuses the whole batch); SQLite would keep it
    checked: set[int] = set()  # one column can feed data and answers both
    for name, arr in [
        *((k, v) for k, v in fields.items() if k != "email_norm"),
        *mapped.data,
        *mapped.answers,
        *mapped.terms,
    ]:
        if id(arr) not in checked and (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
            checked.add(id(arr))
            for i in pc.indices_nonzero(pc.fill_null(pc.match_substring(arr, "\x00"), False)).to_pylist():
                errors.append(
                    (
                        i,
                        name,
                        "contains a NUL character (byte 0x00), which cannot be stored; is the file's encoding right?",
                    )
                )
    invalid = {i for i, _, _ in errors}
    for req in e.required:
        key = "email_norm" if req == "email" else req
        arr = fields.get(key, pa.nulls(n, pa.string()))
        for i in pc.indices_nonzero(pc.is_null(arr)).to_pylist():
            if i not in invalid:
                errors.append((i, req, f"{req} is required and this row has none"))
    sets = value_sets(entity, account_settings)
    for name, vs in sets.items():
        if name in fields:
            canon, outside = vs.apply(fields[name])
            raw = fields[name].filter(outside).to_pylist() if pc.any(outside).as_py() else []
            for i, v in zip(pc.indices_nonzero(outside).to_pylist(), raw, strict=False):
                errors.append((i, name, vs.reason(v, column(name))))
            fields[name] = canon
    if "stage" in sets and auto_advance:
        stage = fields.get("stage")
        lookup = dict(fields.items())
        for key, arr in mapped.data + mapped.answers:
            lookup.setdefault(key, arr)
        for rule in reversed(auto_advance):
            when = rule["when"]
            values = lookup.get(when["field"])
            if values is None:
                continue
            if pa.types.is_timestamp(values.type):
                values = pc.strftime(values, "%Y-%m-%dT%H:%M:%S")
            hit = pc.fill_null(_compare(values, when["op"], when.get("value")), False)
            target = sets["stage"].canonical(str(rule["stage"])) or str(rule["stage"])
            stage = pc.if_else(
                hit, pa.scalar(target, pa.string()), stage if stage is not None else pa.nulls(n, pa.string())
            )
        if stage is not None:
            fields["stage"] = stage
    arrays: dict[str, pa.Array] = {}
    for name in e.staged_columns:
        arrays[name] = _stage_column(entity, name, fields, n)
    # each JSON object (data, answers, terms) is one staged text column, however many source columns feed it
    json_spec: dict[str, str | None] = {"data": None, "answers": None, "terms": None}
    built: dict[tuple, str] = {}
    for kind, items in (("data", mapped.data), ("answers", mapped.answers), ("terms", mapped.terms)):
        if not items:
            continue
        ident = tuple((key, id(arr)) for key, arr in items)
        col = built.get(ident)
        if col is None:
            col = built[ident] = f"x_{kind}"
            arrays[col] = json_objects(items, n)
        json_spec[kind] = col
    rnd = rounds(entity, arrays, n, duplicate_keys, case_sensitive_keys)
    table = pa.Table.from_arrays([rnd, *arrays.values()], names=["rnd", *arrays.keys()])
    return Prepared(table=table, json=json_spec, errors=errors)


def rounds(
    entity: str, cols: dict[str, pa.Array], n: int, duplicate_keys: tuple[str, ...], case_sensitive_keys: bool = False
) -> pa.Array:
    """Duplicate rounds: rows sharing a match key go to successive rounds, so each round is
    set-based yet the batch behaves as if processed row by row in file order."""
    e = registry.get(entity)
    if not case_sensitive_keys:
        cols = {**cols, **{k: pc.utf8_lower(cols[k]) for k in KEY_FIELDS if k in cols}}
    keys: list[pa.Array] = []
    for k in e.identity_keys(duplicate_keys):
        key = cols["email_norm" if k == "email" else k]
        if k in e.match_scope:
            key = pc.binary_join_element_wise(key, pc.fill_null(cols[e.match_scope[k]], ""), "\x1f")
        keys.append(key)
    involved = pa.array([False] * n) if n else pa.array([], pa.bool_())
    for k in keys:
        vc = pc.value_counts(k.drop_null()) if n else None
        if vc is None or len(vc) == 0:
            continue
        dup_vals = vc.field("values").filter(pc.greater(vc.field("counts"), 1))
        if len(dup_vals):
            involved = pc.or_(involved, pc.fill_null(pc.is_in(k, value_set=dup_vals), False))
    out = [1] * n
    idx = pc.indices_nonzero(involved).to_pylist() if n else []
    if idx:
        last: dict[tuple[int, object], int] = {}
        key_lists = [k.take(idx).to_pylist() for k in keys]
        for j, i in enumerate(idx):
            ks = [(ki, kl[j]) for ki, kl in enumerate(key_lists) if kl[j] is not None]
            r = 1 + max((last.get(k, 0) for k in ks), default=0)
            for k in ks:
                last[k] = r
            out[i] = r
    return pa.array(out, pa.int32())
