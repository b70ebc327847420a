"""Connectors of scheduled syncs: external systems behind one read-batches / write-batches interface.

Each connector knows nothing of Dagster nor of the record store. A source yields `Batch`es: an
Arrow table of text columns (what the importer's mapping reads) and the incremental position
(`Position`: cursor value, key) of its last row, in (cursor, key) order, so a batch boundary
falling inside a run of equal cursor values loses no row.
"""

from connectors.sync.base import Batch, Connector, Position, SyncSourceError
from connectors.sync.sql import SqlConnector

__all__ = ["Batch", "Connector", "Position", "SqlConnector", "SyncSourceError"]
