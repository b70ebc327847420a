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
# accounts whose numbers get metadata keys of their own (the busiest ones)
PLOTTED_ACCOUNTS = 25


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


def _title(result: stats.Stats) -> str:
    return (
        f"**Bulk operations since {result.since:%Y-%m-%d %H:%M} UTC** ({result.window_days:g} days"
        + (f", account {result.account}" if result.account else "")
        + ")"
    )


# the summary table's columns: a name, its Dagster column type and what it counts
SUMMARY_COLUMNS = (
    ("operation", "string", "operation kind; `all` is the total"),
    (stats.SUCCEEDED, "int", "started in the window and ended successfully"),
    (stats.FAILED, "int", "started in the window and failed"),
    (stats.CANCELLED, "int", "started in the window and cancelled"),
    (stats.IN_PROGRESS, "int", "still running or waiting"),
    ("success_rate", "float", "succeeded / (succeeded + failed)"),
    ("mean_seconds", "float", "mean duration of those that ended"),
    ("records", "int", "records processed"),
    ("failed_records", "int", "records that failed"),
)


def summary_table(result: stats.Stats) -> dg.TableMetadataValue:
    """The numbers per operation kind and of all, as a table the UI always shows inline.

    (The UI hides a Markdown entry of 1,000 characters or more behind a button: a table per
    account grows past that with the accounts, this one only with the operation kinds.)
    """
    rows = [*result.groups["by_operation"], {**result.groups["total"], "operation": "all"}]
    records = [
        dg.TableRecord(
            {
                name: (round(row[name], 3) if kind == "float" and row[name] is not None else row[name])
                for name, kind, _ in SUMMARY_COLUMNS
            }
        )
        for row in rows
    ]
    schema = dg.TableSchema(columns=[dg.TableColumn(n, kind, description=d) for n, kind, d in SUMMARY_COLUMNS])
    return dg.MetadataValue.table(records=records, schema=schema)


def markdown(result: stats.Stats) -> str:
    """A row per operation kind and account with every number, and the totals."""
    heads = ["operation", "account", "in progress", "succeeded", "failed", "cancelled", "success rate"]
    heads += ["mean", "p95", "records", "failed records", "records/day"]
    rows = [
        *result.groups["by_operation_and_account"],
        {"operation": "**all**", "account": "", **result.groups["total"]},
    ]
    lines = [_title(result), "", "| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
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


def plotted_accounts(result: stats.Stats, limit: int) -> list[str]:
    """The LIMIT busiest accounts of RESULT: most records in the window, then most operations, then by name."""

    def busy(row: dict) -> tuple:
        ran = sum(row[key] or 0 for key in (stats.IN_PROGRESS, stats.SUCCEEDED, stats.FAILED, stats.CANCELLED))
        return (-(row["records"] or 0), -ran, row["account"])

    return [row["account"] for row in sorted(result.groups["by_account"], key=busy)[:limit]]


def metadata(result: stats.Stats, *, accounts_limit: int = PLOTTED_ACCOUNTS) -> dict[str, Any]:
    """Materialization metadata: every number as an int or float (the UI plots them over time).

    `summary` is a table per operation kind, which the UI shows inline however many accounts there
    are; `summary_by_account` the Markdown table per kind and account (behind a button once long).

    Keys: `<operation>/<number>`, `account/<slug>/<number>`, `<operation>/<slug>/<number>` and
    `total/<number>`; a rate or duration with nothing to measure is left out. The per-account keys
    are written for the ACCOUNTS_LIMIT busiest accounts only (`plotted_accounts`), so that a
    deployment with thousands of accounts does not write tens of thousands of entries every 5
    minutes; every account stays in `summary_by_account` and `stats`, and `accounts` /
    `accounts_plotted` say how many there are and how many are plotted.
    """
    plotted = plotted_accounts(result, accounts_limit)
    shown = set(plotted)
    out: dict[str, Any] = {
        "summary": summary_table(result),
        "summary_by_account": dg.MetadataValue.md(markdown(result)),
        "window_days": result.window_days,
        "accounts": len(result.groups["by_account"]),
        "accounts_plotted": len(plotted),
    }
    prefixed = [("total", result.groups["total"])]
    prefixed += [(row["operation"], row) for row in result.groups["by_operation"]]
    prefixed += [(f"account/{row['account']}", row) for row in result.groups["by_account"] if row["account"] in shown]
    prefixed += [
        (f"{row['operation']}/{row['account']}", row)
        for row in result.groups["by_operation_and_account"]
        if row["account"] in shown
    ]
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
