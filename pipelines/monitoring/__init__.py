"""Monitoring: statistics of bulk operations, error logs, alerts on failed runs, the outbox drain, record-store checks."""
