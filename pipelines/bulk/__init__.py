"""Bulk jobs: operations on many records at once (seed 000 and 001)."""
