"""The bulkops code location: each capability's Definitions, merged, plus the shared resources."""

from __future__ import annotations

import dagster as dg

from pipelines.bulk.definitions import defs as bulk_defs
from pipelines.imports.definitions import defs as imports_defs
from resources import RecordStoreResource

shared = dg.Definitions(resources={"record_store": RecordStoreResource()})

defs = dg.Definitions.merge(shared, imports_defs, bulk_defs)
