"""Exports: filtered records to CSV, Excel or Parquet from the Launchpad, presets, the command line and the API."""
