"""Dagster resources: thin, configurable wrappers around connectors."""

from resources.store import RecordStoreResource, shown_url, store_run_config

__all__ = ["RecordStoreResource", "shown_url", "store_run_config"]
