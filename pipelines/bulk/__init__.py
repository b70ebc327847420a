"""Bulk jobs: operations on many records at once (status updates, deletes, field updates, rollbacks)."""
