"""Bulk import of CSV/Parquet files into the record store."""
