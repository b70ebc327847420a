"""Dagster resources: thin, configurable wrappers around connectors."""

from resources.store import RecordStoreResource

__all__ = ["RecordStoreResource"]
