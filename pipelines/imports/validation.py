"""Row validation and auto-advance rules, vectorised over Arrow batches."""

from __future__ import annotations

from pipelines.imports.errors import ImportFailed

AUTO_ADVANCE_OPS = ("==", "!=", ">", ">=", "<", "<=", "in", "contains")


def check_auto_advance(rules: tuple[dict, ...]) -> None:
    for i, rule in enumerate(rules):
        when = rule.get("when") if isinstance(rule, dict) else None
        if not isinstance(when, dict) or not when.get("field") or when.get("op") not in AUTO_ADVANCE_OPS:
            raise ImportFailed(f"auto_advance rule {i + 1} needs when: {{field, op ({', '.join(AUTO_ADVANCE_OPS)}), value}}")
        if not rule.get("stage"):
            raise ImportFailed(f"auto_advance rule {i + 1} needs a stage")
