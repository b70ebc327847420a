"""The statistics of bulk operations as the CLI, the HTTP API and the `bulk_operations_stats` asset give them.

All three call `stats_report` (one SQL aggregation, `connectors.store.stats.operation_stats`);
`markdown` and `metadata` only present its result.
"""

from __future__ import annotations

import os
import uuid
from datetime import datetime
from typing import Any

import dagster as dg

from connectors.store import RecordStore, stats

DEFAULT_WINDOW = "7d"
# numbers each group reports, in the order tables show them
NUMBERS = (
    stats.IN_PROGRESS,
    stats.SUCCEEDED,
    stats.FAILED,
    stats.CANCELLED,
    "success_rate",
    "mean_seconds",
    "p95_seconds",
    "records",
    "failed_records",
    "records_per_day",
)
FLOATS = frozenset({"success_rate", "mean_seconds", "p95_seconds", "records_per_day"})


def stats_report(
    store: RecordStore, *, account_id: uuid.UUID | None = None, since: str = DEFAULT_WINDOW, now: datetime | None = None
) -> stats.Stats:
    """The statistics of the window SINCE (such as `7d`), of one account or of all."""
    window = stats.parse_window(since)
    with store.engine.connect() as conn:
        return stats.operation_stats(conn, account_id=account_id, since=window, now=now)


def _cell(key: str, value: Any) -> str:
    if value is None:
        return "-"
    if key == "success_rate":
        return f"{value * 100:.1f}%"
    if key in ("mean_seconds", "p95_seconds"):
        return f"{value:.1f} s"
    return f"{value:,}" if isinstance(value, int) else f"{value:,.1f}"


def markdown(result: stats.Stats) -> str:
    """A table per operation kind and account, and the totals, for the UI."""
    heads = ["operation", "account", "in progress", "succeeded", "failed", "cancelled", "success rate"]
    heads += ["mean", "p95", "records", "failed records", "records/day"]
    lines = [
        f"**Bulk operations since {result.since:%Y-%m-%d %H:%M} UTC** ({result.window_days:g} days"
        + (f", account {result.account}" if result.account else "")
        + ")",
        "",
        "| " + " | ".join(heads) + " |",
        "|" + "---|" * len(heads),
    ]
    rows = [
        *result.groups["by_operation_and_account"],
        {"operation": "**all**", "account": "", **result.groups["total"]},
    ]
    for row in rows:
        cells = [str(row["operation"]), str(row["account"])] + [_cell(k, row[k]) for k in NUMBERS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def text_table(result: stats.Stats) -> str:
    """The per-kind-and-account rows and the totals as a plain-text table, for the terminal."""
    heads = [
        "operation",
        "account",
        "running",
        "ok",
        "failed",
        "cancelled",
        "rate",
        "mean",
        "p95",
        "records",
        "per day",
    ]
    keys = (stats.IN_PROGRESS, stats.SUCCEEDED, stats.FAILED, stats.CANCELLED, "success_rate", "mean_seconds")
    keys += ("p95_seconds", "records", "records_per_day")
    rows = [*result.groups["by_operation_and_account"], {"operation": "all", "account": "", **result.groups["total"]}]
    table = [heads] + [[str(r["operation"]), str(r["account"])] + [_cell(k, r[k]) for k in keys] for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(heads))]
    title = f"since {result.since:%Y-%m-%d %H:%M} UTC ({result.window_days:g} days)"
    return "\n".join(
        [title, *("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in table)]
    )


def _metric(key: str, value: Any) -> dg.MetadataValue | None:
    if value is None:
        return None
    return dg.MetadataValue.float(float(value)) if key in FLOATS else dg.MetadataValue.int(int(value))


def metadata(result: stats.Stats) -> dict[str, Any]:
    """Materialization metadata: every number as an int or float (the UI plots them over time).

    Keys: `<operation>/<number>`, `account/<slug>/<number>`, `<operation>/<slug>/<number>` and
    `total/<number>`; a rate or duration with nothing to measure is left out.
    """
    out: dict[str, Any] = {"summary": dg.MetadataValue.md(markdown(result)), "window_days": result.window_days}
    prefixed = [("total", result.groups["total"])]
    prefixed += [(row["operation"], row) for row in result.groups["by_operation"]]
    prefixed += [(f"account/{row['account']}", row) for row in result.groups["by_account"]]
    prefixed += [(f"{row['operation']}/{row['account']}", row) for row in result.groups["by_operation_and_account"]]
    for prefix, row in prefixed:
        for key in NUMBERS:
            value = _metric(key, row[key])
            if value is not None:
                out[f"{prefix}/{key}"] = value
    out["stats"] = dg.MetadataValue.json(result.as_dict())
    return out


def api_base_url() -> str:
    """Where the HTTP API answers, for links in run metadata: `BULKOPS_API_URL`, else http://127.0.0.1:8000."""
    return os.environ.get("BULKOPS_API_URL", "http://127.0.0.1:8000").rstrip("/")
