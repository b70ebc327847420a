"""Row validation and auto-advance rules, vectorised over Arrow batches."""

from __future__ import annotations

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

# staged values that find records: compared without case (unless case_sensitive_keys) and
# surrounding whitespace, runs of whitespace as one space
KEY_FIELDS = ("external_id", "code", "job_code", "application_external_id", "candidate_external_id")
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


@dataclass
class Prepared:
    """A validated batch ready for the record store.

    `table` holds row_no, rnd (duplicate round), the entity's STAGE_FIELDS and x_0..x_k extra
    columns; `json` says which extra columns build which JSON object (data, answers, terms).
    """

    table: pa.Table
    json: dict[str, list[tuple[str, str]]]
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


def prepare(entity: str, mapped: Mapped, n: int, *, auto_advance: tuple[dict, ...] = (),
            duplicate_keys: tuple[str, ...] = (), case_sensitive_keys: bool = False) -> Prepared:
    """Entity rules on a mapped batch: email normalisation and checks, stage slugs, auto-advance, rounds."""
    fields = dict(mapped.fields)
    # match keys: runs of whitespace count as one space (the writer folds case in SQL)
    for key in KEY_FIELDS:
        if key in fields and pa.types.is_string(fields[key].type):
            fields[key] = pc.replace_substring_regex(pc.utf8_trim_whitespace(fields[key]), r"[\s\pZ]+", " ")
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
    cols = {"row_no": None}
    arrays: dict[str, pa.Array] = {}
    for name in STAGE_FIELDS[entity]:
        arrays[name] = _stage_column(entity, name, fields, n)
    json_spec: dict[str, list[tuple[str, str]]] = {"data": [], "answers": [], "terms": []}
    seen: dict[int, str] = {}
    for kind, items in (("data", mapped.data), ("answers", mapped.answers), ("terms", mapped.terms)):
        for key, arr in items:
            col = seen.get(id(arr))
            if col is None:
                col = f"x_{len(seen)}"
                seen[id(arr)] = col
                arrays[col] = arr
            json_spec[kind].append((key, col))
    del cols, sources
    rnd = rounds(entity, arrays, n, duplicate_keys, case_sensitive_keys)
    table = pa.Table.from_arrays([rnd, *arrays.values()], names=["rnd", *arrays.keys()])
    return Prepared(table=table, json=json_spec, errors=errors)


def rounds(entity: str, cols: dict[str, pa.Array], n: int, duplicate_keys: tuple[str, ...],
           case_sensitive_keys: bool = False) -> pa.Array:
    """Duplicate rounds: rows sharing a match key go to successive rounds, so each round is
    set-based yet the batch behaves as if processed row by row in file order."""
    if not case_sensitive_keys:
        cols = {**cols, **{k: pc.utf8_lower(cols[k]) for k in KEY_FIELDS if k in cols}}
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
