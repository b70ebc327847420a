"""The bulkops code location: each capability's Definitions, merged, plus the shared resources."""

from __future__ import annotations

import dagster as dg

from pipelines import records
from pipelines.bulk import definitions as bulk
from pipelines.documents import definitions as documents
from pipelines.exports import definitions as exports
from pipelines.imports import definitions as imports
from pipelines.monitoring import definitions as monitoring
from pipelines.syncs import definitions as syncs
from resources import RecordStoreResource

# dagster refuses a module with more than one Definitions at module scope: merge inline
defs = dg.Definitions.merge(
    dg.Definitions(resources={"record_store": RecordStoreResource()}),
    records.defs,
    imports.defs,
    bulk.defs,
    exports.defs,
    monitoring.defs,
    documents.defs,
    syncs.defs,
)
