"""Error logs in a run's metadata: the first failed records with their reasons, and where to get all of them."""

from __future__ import annotations

import uuid
from typing import Any

import dagster as dg

from connectors.store import RecordStore, failures
from pipelines.monitoring.report import api_base_url

SHOWN = 50
COMMANDS = {"import": "bulkops imports failed {id}", "bulk_job": "bulkops bulk-jobs failed {id}"}


def failed_records_metadata(store: RecordStore, change_set_id: uuid.UUID | str, *, kind: str) -> dict[str, Any]:
    """Metadata for the run of change set CHANGE_SET_ID (of KIND): a table of its first failed
    records, the API's CSV download of all of them and the command that prints them."""
    id_ = uuid.UUID(str(change_set_id))
    try:
        shown = failures.source(kind).preview(store, id_, SHOWN)
    except Exception as exc:
        # the error log is a report: reading it never fails the run it reports on
        return {"failed_records": dg.MetadataValue.text(f"failed records could not be read: {exc}")}
    if not shown:
        return {}
    return {
        f"failed_records (first {SHOWN})": dg.MetadataValue.table(
            records=[dg.TableRecord({"record": r.ref, "field": r.field, "reason": r.reason}) for r in shown],
            schema=dg.TableSchema(
                columns=[
                    dg.TableColumn("record", "string", description="record id, or row and line of the file"),
                    dg.TableColumn("field", "string"),
                    dg.TableColumn("reason", "string"),
                ]
            ),
        ),
        "failed_records_csv": dg.MetadataValue.url(f"{api_base_url()}/api/change-sets-failed-records?id={id_}"),
        "failed_records_command": COMMANDS.get(kind, "bulkops failed {id}").format(id=id_),
    }
