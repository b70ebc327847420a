"""Scheduled syncs between the record store and external systems (docs/syncs.md)."""
