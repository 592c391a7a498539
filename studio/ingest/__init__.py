"""Ingest: sources (DiffusionDB, tables, our outputs) -> one streaming pipeline -> the store."""
