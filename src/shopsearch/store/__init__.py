"""Workspace store: Parquet tables, DuckDB SQL, atomic writes, validation and ingest."""
