"""Row validation and auto-advance rules, vectorised over Arrow batches."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from pipelines.imports.errors import ImportFailed
from pipelines.imports.mapping import Mapped, slug

AUTO_ADVANCE_OPS = ("==", "!=", ">", ">=", "<", "<=", "in", "contains")


def check_auto_advance(rules: tuple[dict, ...]) -> None:
    for i, rule in enumerate(rules):
        when = rule.get("when") if isinstance(rule, dict) else None
        if not isinstance(when, dict) or not when.get("field") or when.get("op") not in AUTO_ADVANCE_OPS:
            raise ImportFailed(f"auto_advance rule {i + 1} needs when: {{field, op ({', '.join(AUTO_ADVANCE_OPS)}), value}}")
        if not rule.get("stage"):
            raise ImportFailed(f"auto_advance rule {i + 1} needs a stage")

EMAIL_RE = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"
NUMBER_RE = r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$"
# staged text columns per entity, in order (timestamps: applied_at)
STAGE_FIELDS: dict[str, tuple[str, ...]] = {
    "applications": (
        "external_id", "email", "email_norm", "first_name", "last_name", "phone", "candidate_external_id",
        "job_code", "job_title", "job_location", "stage", "status", "source", "applied_at",
    ),
    "candidates": ("external_id", "email", "email_norm", "first_name", "last_name", "phone"),
    "jobs": ("external_id", "code", "title", "description", "location", "status", "source_url"),
    "contracts": ("external_id", "application_external_id", "status", "template"),
}


_JSON_SPECIAL = r'[\\"\x00-\x1f]'
_JSON_ESCAPES = (("\\", "\\\\"), ('"', '\\"'), ("\n", "\\n"), ("\r", "\\r"), ("\t", "\\t"), ("\b", "\\b"), ("\f", "\\f"))


def _json_string_body(arr: pa.Array) -> pa.Array:
    """Values escaped for the inside of a JSON string (quotes, backslashes, control characters)."""
    if not pc.any(pc.match_substring_regex(arr, _JSON_SPECIAL)).as_py():
        return arr
    if pc.any(pc.match_substring_regex(arr, r"[\x00-\x07\x0b\x0e-\x1f]")).as_py():
        return pa.array([None if v is None else json.dumps(v, ensure_ascii=False)[1:-1] for v in arr.to_pylist()], pa.string())
    for raw, escaped in _JSON_ESCAPES:
        arr = pc.replace_substring(arr, raw, escaped)
    return arr


def json_objects(items: list[tuple[str, pa.Array]], n: int) -> pa.Array:
    """One JSON object text per row from (key, string values): null values left out, the last of a repeated key wins."""
    last: dict[str, pa.Array] = {}
    for key, arr in items:
        last[key] = arr
    empty = pa.scalar(None, pa.string())
    parts: list[pa.Array] = []
    pairs = list(last.items())
    for i in range(0, len(pairs), 100):
        frags = []
        for key, arr in pairs[i : i + 100]:
            if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
                arr = pc.cast(arr, pa.string())
            head = pa.scalar(json.dumps(str(key), ensure_ascii=False) + ':"', pa.string())
            frags.append(pc.binary_join_element_wise(head, _json_string_body(arr), pa.scalar('"', pa.string()), ""))
        joined = pc.binary_join_element_wise(*frags, ",", null_handling="skip")
        parts.append(pc.if_else(pc.equal(joined, ""), empty, joined))
    body = pc.binary_join_element_wise(*parts, ",", null_handling="skip") if len(parts) > 1 else pc.fill_null(parts[0], "")
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
    fn = {"==": pc.equal, "!=": pc.not_equal, ">": pc.greater, ">=": pc.greater_equal, "<": pc.less, "<=": pc.less_equal}[op]
    return fn(lhs, rhs)


def _stage_column(entity: str, name: str, fields: dict[str, pa.Array], n: int) -> pa.Array:
    if name in fields:
        arr = fields[name]
        return arr if arr.type != pa.null() else pa.nulls(n, pa.string())
    if name == "applied_at":
        return pa.nulls(n, pa.timestamp("us", "UTC"))
    return pa.nulls(n, pa.string())


def prepare(entity: str, mapped: Mapped, n: int, *, auto_advance: tuple[dict, ...] = (), duplicate_keys: tuple[str, ...] = ()) -> Prepared:
    """Entity rules on a mapped batch: email normalisation and checks, stage slugs, auto-advance, rounds."""
    fields = dict(mapped.fields)
    errors = list(mapped.errors)
    sources = {}
    if "email" in fields:
        email = fields["email"]
        norm = pc.utf8_lower(pc.replace_substring_regex(email, r"\s+", ""))
        norm = pc.if_else(pc.equal(norm, ""), pa.scalar(None, pa.string()), norm)
        fields["email_norm"] = norm
        fields["email"] = pc.utf8_trim_whitespace(email)
        bad = pc.and_(pc.is_valid(norm), pc.invert(pc.fill_null(pc.match_substring_regex(norm, EMAIL_RE), False)))
        for i in pc.indices_nonzero(pc.fill_null(bad, False)).to_pylist():
            errors.append((i, "email", f"invalid email {email[i].as_py()!r}"))
    # PostgreSQL text cannot hold NUL (its COPY refuses the whole batch); SQLite would keep it
    checked: set[int] = set()  # one column can feed data and answers both
    for name, arr in [*((k, v) for k, v in fields.items() if k != "email_norm"), *mapped.data, *mapped.answers, *mapped.terms]:
        if id(arr) not in checked and (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
            checked.add(id(arr))
            for i in pc.indices_nonzero(pc.fill_null(pc.match_substring(arr, "\x00"), False)).to_pylist():
                errors.append((i, name.replace("_norm", ""), "contains a NUL character (byte 0x00), which cannot be stored; "
                               "is the file's encoding right?"))
    required = {"applications": "email_norm", "candidates": "email_norm", "jobs": "code", "contracts": "external_id"}[entity]
    req = fields.get(required, pa.nulls(n, pa.string()))
    for i in pc.indices_nonzero(pc.is_null(req)).to_pylist():
        errors.append((i, required.replace("_norm", ""), f"{required.replace('_norm', '')} is required"))
    if entity == "applications":
        stage = fields.get("stage")
        if stage is not None:
            stage = slug(stage)
            stage = pc.if_else(pc.equal(stage, ""), pa.scalar(None, pa.string()), stage)
        lookup = {k: v for k, v in fields.items()}
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
            target_stage = pa.scalar(str(rule["stage"]), pa.string())
            stage = pc.if_else(hit, target_stage, stage if stage is not None else pa.nulls(n, pa.string()))
        if stage is not None:
            fields["stage"] = stage
    if entity == "jobs" and "code" in fields:
        fields["code"] = pc.utf8_trim_whitespace(fields["code"])
    cols = {"row_no": None}
    arrays: dict[str, pa.Array] = {}
    for name in STAGE_FIELDS[entity]:
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
    del cols, sources
    rnd = rounds(entity, arrays, n, duplicate_keys)
    table = pa.Table.from_arrays([rnd, *arrays.values()], names=["rnd", *arrays.keys()])
    return Prepared(table=table, json=json_spec, errors=errors)


def rounds(entity: str, cols: dict[str, pa.Array], n: int, duplicate_keys: tuple[str, ...]) -> pa.Array:
    """Duplicate rounds: rows sharing a match key go to successive rounds, so each round is
    set-based yet the batch behaves as if processed row by row in file order."""
    keys: list[pa.Array] = []
    if "external_id" in duplicate_keys or entity == "contracts":
        keys.append(cols["external_id"])
    if entity in ("applications", "candidates") and ("email" in duplicate_keys or entity == "candidates"):
        e = cols["email_norm"]
        if entity == "applications":
            e = pc.binary_join_element_wise(e, pc.fill_null(cols["job_code"], ""), "\x1f")
        keys.append(e)
    if entity == "jobs":
        keys.append(cols["code"])
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
